"""cconv-example: a Swish layer and the Lion optimizer, as a cconv plugin.

cconv finds this module through the entry point `example` of the group
"cconv" (see pyproject.toml) and calls the hooks below.
"""
import cconv

from .lion import Lion
from .swish import Swish

__all__ = ["Swish", "Lion"]


@cconv.hookimpl
def register_layers(register):
    register(Swish)


@cconv.hookimpl
def register_optimizers(register):
    register(Lion)   # as "lion"
