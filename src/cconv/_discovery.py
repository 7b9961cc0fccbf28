"""The plugin manager and entry-point discovery (cconv.plugins builds on it).

Entry points are loaded one by one, so that a plugin that fails to import,
or implements a hook cconv does not have, is reported by name and skipped
(raised under CCONV_STRICT_PLUGINS=1) while the others load.
"""
import importlib
import os
import sys
import warnings

import pluggy

from . import hookspecs
from ._registries import PluginError

__all__ = ["ENTRY_POINT_GROUP", "BUILTIN_PLUGINS", "HOOKS", "PluginWarning",
           "CconvPluginManager", "check_hooks", "report", "load_entry_point_plugins",
           "make_plugin_manager"]

ENTRY_POINT_GROUP = "cconv"
BUILTIN_PLUGINS = ("cconv.builtins.layers", "cconv.builtins.kernels",
                   "cconv.builtins.optimizers", "cconv.builtins.loaders")
HOOKS = ("register_layers", "register_kernels", "register_optimizers",
         "register_weight_loaders")


class PluginWarning(UserWarning):
    """A plugin that failed to load or register and was skipped."""


def _env_flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


# ---------------------------------------------------------------- the manager

class CconvPluginManager(pluggy.PluginManager):
    """pluggy's manager, plus where each plugin came from and a change counter.

    `generation` grows on every register/unregister, so registries built
    earlier know they are stale, however the plugin was (un)registered.
    """

    def __init__(self):
        super().__init__("cconv")
        self.add_hookspecs(hookspecs)
        self.generation = 0
        self.sources = {}    # plugin name -> distribution name
        self.isolated = set()  # plugin names whose failures are reported and skipped
        self.failed = {}     # plugin name -> why it was skipped

    def register(self, plugin, name=None):
        registered = super().register(plugin, name)
        self.generation += 1
        return registered

    def unregister(self, plugin=None, name=None):
        removed = super().unregister(plugin, name)
        self.generation += 1
        return removed


def _misspelt_hooks(pm, plugin):
    """Names of the plugin's hookimpls that match no cconv hook."""
    bad = []
    for caller in pm.get_hookcallers(plugin) or ():
        impls = [i for i in caller.get_hookimpls() if i.plugin is plugin]
        if not caller.has_spec() and not all(i.opts.get("optionalhook") for i in impls):
            bad.append(caller.name)
    return sorted(bad)


def check_hooks(pm):
    """PluginError naming the plugin when one implements a hook cconv does not have."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        culprit = exc.plugin
        name = pm.get_name(culprit) or repr(culprit)
        parts = []
        for hook in _misspelt_hooks(pm, culprit):
            import difflib   # only for this message
            close = difflib.get_close_matches(hook, HOOKS, n=1)
            parts.append(f"{hook!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise PluginError(f"plugin {name!r} implements {', '.join(parts) or exc}, which "
                          f"is not a cconv hook; cconv hooks: {', '.join(HOOKS)}") from exc


def report(plugin_name, source, what, exc):
    """Warn that a plugin was skipped, or raise in strict mode."""
    message = (f"cconv plugin {plugin_name!r} (from {source}) {what}: "
               f"{type(exc).__name__}: {exc}")
    if _env_flag("CCONV_STRICT_PLUGINS"):
        raise PluginError(message) from exc
    warnings.warn(message + " -- skipped (set CCONV_STRICT_PLUGINS=1 to raise)",
                  PluginWarning, stacklevel=3)
    return message


def _entry_points(group):
    # Imported here, not at the top: importlib.metadata (with the email
    # parser it pulls in) took 28 ms, a fifth of what a first net costs to
    # import. Looked up through the module at call time, so tests can
    # substitute it.
    import importlib.metadata
    try:
        return list(importlib.metadata.entry_points(group=group))
    except TypeError:  # Python 3.9: a dict of group -> entry points
        return list(importlib.metadata.entry_points().get(group, ()))


def _dist_name(ep):
    """The distribution that declares the entry point (its own name when unknown)."""
    return getattr(getattr(ep, "dist", None), "name", None) or ep.name


def _wanted_plugins():
    """None for all entry-point plugins, else the set of names to load."""
    listed = os.environ.get("CCONV_LOAD_PLUGINS")
    if listed is not None:
        return {n.strip() for n in listed.split(",") if n.strip()}
    if _env_flag("CCONV_DISABLE_PLUGIN_AUTOLOAD"):
        return set()
    return None


def load_entry_point_plugins(pm, group=ENTRY_POINT_GROUP, only=None):
    """Register each plugin of the entry-point group; report and skip broken ones.

    only: a set of entry-point or package names to load (None: all).
    Returns the names registered. (pluggy's load_setuptools_entrypoints would
    stop at the first plugin that fails to import; this loop isolates each.)
    """
    loaded, seen = [], set()
    for ep in _entry_points(group):
        source = _dist_name(ep)
        if only is not None and ep.name not in only and source not in only:
            continue
        seen.update((ep.name, source))
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        plugin = None
        try:
            plugin = ep.load()
            if pm.is_registered(plugin):   # the same module, registered by hand already
                continue
            pm.register(plugin, name=ep.name)
            check_hooks(pm)
        except Exception as exc:
            if plugin is not None and pm.is_registered(plugin):
                pm.unregister(plugin)
            pm.failed[ep.name] = report(ep.name, source, "failed to load", exc)
            continue
        pm.sources[ep.name] = source
        pm.isolated.add(ep.name)
        loaded.append(ep.name)
    missing = sorted((only or set()) - seen)
    if missing:
        warnings.warn(f"CCONV_LOAD_PLUGINS names {', '.join(map(repr, missing))}, which no "
                      f"installed cconv plugin provides", PluginWarning, stacklevel=2)
    return loaded


def _trace(pm):
    def before(hook_name, hook_impls, kwargs):
        names = ", ".join(i.plugin_name for i in hook_impls)
        print(f"cconv plugins: {hook_name} -> {names}", file=sys.stderr)

    def after(outcome, hook_name, hook_impls, kwargs):
        error = getattr(outcome, "exception", None)   # pluggy >= 1.1
        if error is not None:
            print(f"cconv plugins: {hook_name} raised {error!r}", file=sys.stderr)

    return pm.add_hookcall_monitoring(before, after)


def make_plugin_manager(builtins=True, autoload=None):
    """A new plugin manager: the built-ins, then the entry-point plugins.

    autoload: True/False, or None to follow CCONV_DISABLE_PLUGIN_AUTOLOAD and
    CCONV_LOAD_PLUGINS. Tracing follows CCONV_TRACE_PLUGINS.
    """
    pm = CconvPluginManager()
    if _env_flag("CCONV_TRACE_PLUGINS"):
        _trace(pm)
    if builtins:
        for module in BUILTIN_PLUGINS:
            pm.register(importlib.import_module(module), name=module)
            pm.sources[module] = "cconv"
    only = _wanted_plugins() if autoload is None else (None if autoload else set())
    if only is None or only:
        load_entry_point_plugins(pm, only=only)
    return pm
