"""cconv-torch: PyTorch checkpoints (.pt, .pth, .bin) as cconv weights, without torch.

cconv finds this module through the entry point `torch` of the group "cconv"
(see pyproject.toml); its loader then serves `cconv.load_weights(net, "x.pt")`
and `cconv.plugins.find_weight_loader("x.pt")`. Pickled code never runs: see
unpickler.py for the allow-list.
"""
import cconv

from .reader import WRAPPER_KEYS, find_state_dict, load_torch, read_checkpoint
from .unpickler import ALLOWED, TorchFileError, UnsafePickleError

__all__ = [
    "ALLOWED",
    "SUFFIXES",
    "WRAPPER_KEYS",
    "TorchFileError",
    "UnsafePickleError",
    "find_state_dict",
    "load_torch",
    "read_checkpoint",
]

SUFFIXES = (".pt", ".pth", ".bin")


@cconv.hookimpl
def register_weight_loaders(register):
    register("torch", load_torch, suffixes=SUFFIXES,
             description="PyTorch checkpoint, zip or legacy format (no torch needed; "
                         "restricted unpickler)")
