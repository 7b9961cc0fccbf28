"""pytest fixtures for cconv plugin authors.

Installed with cconv as the pytest plugin "cconv" (entry point group
pytest11), so any test suite in an environment with cconv can use:

    def test_swish_is_registered(cconv_plugin):
        cconv_plugin(my_plugin)                  # a module or object with @cconv.hookimpl
        assert cconv.plugins.get_layer_class("Swish") is Swish

    def test_with_only_builtins(cconv_pm):       # a fresh default plugin manager
        cconv_pm.register(my_plugin)

`cconv_plugin` registers for one test and unregisters afterwards, forgetting
forced kernels too; `cconv_pm` gives each test a newly made default manager
(built-ins + entry points, as the environment says) and drops it afterwards.
Both are thin wrappers over `temporary_plugins()` and `fresh_plugin_manager()`,
usable without pytest.
"""
import contextlib

import pytest

__all__ = ["temporary_plugins", "fresh_plugin_manager", "cconv_plugin", "cconv_pm"]


@contextlib.contextmanager
def temporary_plugins():
    """Yields register(plugin, name=None) -> plugin; everything registered is undone on exit."""
    from cconv import plugins

    registered = []

    def register(plugin, name=None):
        # an installed plugin is already registered through its entry point: use that
        if plugins.get_plugin_manager().is_registered(plugin):
            return plugin
        plugins.register_plugin(plugin, name=name)
        registered.append(plugin)
        return plugin

    try:
        yield register
    finally:
        pm = plugins.get_plugin_manager()
        for plugin in reversed(registered):
            if pm.is_registered(plugin):
                plugins.unregister_plugin(plugin)
        plugins.reset(manager=False)


@contextlib.contextmanager
def fresh_plugin_manager():
    """A newly made default plugin manager for the block; dropped afterwards."""
    from cconv import plugins

    plugins.reset()
    try:
        yield plugins.get_plugin_manager()
    finally:
        plugins.reset()


@pytest.fixture
def cconv_plugin():
    """register(plugin, name=None): a cconv plugin registered for this test only."""
    with temporary_plugins() as register:
        yield register


@pytest.fixture
def cconv_pm():
    """A fresh default cconv plugin manager for this test (built-ins + entry points)."""
    with fresh_plugin_manager() as pm:
        yield pm
