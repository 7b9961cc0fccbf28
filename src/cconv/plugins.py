"""Plugins: the registries built from the hooks, kernel selection, the public API.

Nothing happens at import: the default plugin manager is made on first use
(`get_plugin_manager()`, `registry()`, `run_kernel()`...). It registers the
built-ins first, then the plugins of the entry-point group "cconv", and the
registries are built by calling each plugin's hooks in that order, one
plugin at a time, so every item records the plugin and package it came from.

Environment:
    CCONV_DISABLE_PLUGIN_AUTOLOAD=1   load no entry-point plugins
    CCONV_LOAD_PLUGINS=a,b            load only these (entry-point or package names;
                                      "" loads none; wins over the switch above)
    CCONV_STRICT_PLUGINS=1            a broken plugin raises instead of a warning
    CCONV_TRACE_PLUGINS=1             print every hook call to stderr

The manager and the entry-point loading are in _discovery, the registry
tables and kernel selection in _registries; everything public is here.
"""
import contextlib
import os
import threading
import types

import pluggy

from ._discovery import (BUILTIN_PLUGINS, ENTRY_POINT_GROUP, HOOKS, CconvPluginManager,
                         PluginWarning, check_hooks, load_entry_point_plugins,
                         make_plugin_manager, report)
from ._registries import (DuplicateNameError, Entry, Kernel, KernelNotSupportedError,
                          KernelRegistry, PluginError, Registry, UnknownNameError)
from ._layer_errors import LayerError

__all__ = [
    "ENTRY_POINT_GROUP", "BUILTIN_PLUGINS", "HOOKS", "PluginError", "PluginWarning", "LayerError",
    "DuplicateNameError", "UnknownNameError", "KernelNotSupportedError",
    "CconvPluginManager", "Registries", "make_plugin_manager", "load_entry_point_plugins",
    "get_plugin_manager",
    "registry", "build_registries", "register_plugin", "unregister_plugin", "reset",
    "get_layer_class", "get_optimizer_class", "get_weight_loader", "find_weight_loader",
    "select_kernel", "run_kernel", "force_kernel", "use_kernel", "forced_kernels",
    "describe",
]


# ---------------------------------------------------------------- registries

class Registries:
    """Everything the plugins registered: .layers, .kernels, .optimizers, .weight_loaders."""

    def __init__(self, pm, forced=None):
        self.pm = pm
        self.generation = pm.generation
        self.layers = Registry("layer")
        self.optimizers = Registry("optimizer", case_sensitive=False)
        self.weight_loaders = Registry("weight loader")
        self.kernels = KernelRegistry(forced)


def _source_of(pm, name, plugin):
    """Package a plugin came from: recorded at load, else its top-level module."""
    if name not in pm.sources:
        module = plugin.__name__ if isinstance(plugin, types.ModuleType) else \
            getattr(plugin, "__module__", None)
        pm.sources[name] = (module or name).split(".")[0]
    return pm.sources[name]


class _Collector:
    """The `register` callbacks for one plugin: check each item now, commit at the end.

    Checking at the call makes the traceback point at the plugin's own
    register(...) line; committing at the end keeps a plugin that fails half
    way from leaving half its items behind.
    """

    def __init__(self, regs, plugin_name, source):
        self.regs, self.plugin, self.source = regs, plugin_name, source
        self.origin = f"plugin {plugin_name!r} from {source}"
        self.items = []   # (registry, Entry or Kernel, override)
        self.staged = set()

    def _stage(self, reg, key, what, item, override):
        if key in self.staged:
            raise DuplicateNameError(f"{what} is registered twice by {self.origin}")
        if isinstance(item, Kernel):
            reg.check_new(item.op, item.name, self.origin, override)
        else:
            reg.check_new(item.name, self.origin, override)
        self.staged.add(key)
        self.items.append((reg, item, override))

    def _entry(self, reg, name, obj, override, info=None):
        if not isinstance(name, str) or not name:
            raise TypeError(f"{reg.kind} name must be a non-empty string, got {name!r}")
        entry = Entry(name, obj, self.source, self.plugin, info or {})
        self._stage(reg, (reg.kind, reg._key(name)), f"{reg.kind} {name!r}", entry, override)

    def layer(self, layer_class, override=False):
        from .nn.base import Layer

        if not (isinstance(layer_class, type) and issubclass(layer_class, Layer)):
            raise TypeError(f"register_layers: expected a subclass of cconv.nn.base.Layer, "
                            f"got {layer_class!r}")
        self._entry(self.regs.layers, layer_class.type_name, layer_class, override)

    def optimizer(self, optimizer_class, name=None, override=False):
        if not isinstance(optimizer_class, type) or not all(
                callable(getattr(optimizer_class, m, None)) for m in ("step", "zero_grad")):
            raise TypeError(f"register_optimizers: expected a class with step() and "
                            f"zero_grad(), got {optimizer_class!r}")
        self._entry(self.regs.optimizers, name or optimizer_class.__name__.lower(), optimizer_class,
                    override)

    def weight_loader(self, name, function, suffixes=(), override=False, description=""):
        if not callable(function):
            raise TypeError(f"register_weight_loaders: function for {name!r} must be "
                            f"callable, got {function!r}")
        suffixes = (suffixes,) if isinstance(suffixes, str) else tuple(suffixes)
        info = {"suffixes": tuple(s.lower() for s in suffixes), "description": description}
        self._entry(self.regs.weight_loaders, name, function, override, info)

    def kernel(self, op, name, function, supports=None, priority=0, override=False,
               description=""):
        for arg, value in (("op", op), ("name", name)):
            if not isinstance(value, str) or not value:
                raise TypeError(f"register_kernels: {arg} must be a non-empty string, "
                                f"got {value!r}")
        if not callable(function) or (supports is not None and not callable(supports)):
            raise TypeError(f"register_kernels: function and supports of {op}/{name} must "
                            f"be callable, got {function!r} and {supports!r}")
        kernel = Kernel(op, name, function, supports, priority, self.source, self.plugin,
                        description)
        self._stage(self.regs.kernels, ("kernel", op, name),
                    f"kernel {name!r} for op {op!r}", kernel, override)

    def commit(self):
        for reg, item, override in self.items:
            reg.add(item, override=override)


def _call_one(pm, hook, plugin, callback):
    """Call one plugin's implementation of hook, through pluggy so tracing sees it."""
    impls = getattr(pm.hook, hook).get_hookimpls()
    if not any(i.plugin is plugin for i in impls):
        return
    others = {i.plugin for i in impls if i.plugin is not plugin}
    # subset_hook_caller leaves out plugins by attribute name, which misses an
    # implementation named otherwise (@hookimpl(specname=...)): call those directly.
    if all(hasattr(other, hook) for other in others):
        pm.subset_hook_caller(hook, remove_plugins=others)(register=callback)
    else:
        for impl in impls:
            if impl.plugin is plugin:
                impl.function(register=callback)


def _collect(pm, regs, name, plugin):
    """Run the plugin's hooks (only its own) and commit what it registered."""
    collector = _Collector(regs, name, _source_of(pm, name, plugin))
    callbacks = {"register_layers": collector.layer, "register_kernels": collector.kernel,
                 "register_optimizers": collector.optimizer,
                 "register_weight_loaders": collector.weight_loader}
    for hook, callback in callbacks.items():
        _call_one(pm, hook, plugin, callback)
    collector.commit()


def build_registries(pm, forced=None):
    """Registries from every plugin of pm, in registration order (built-ins first).

    A failing entry-point plugin is reported, unregistered and skipped (raised
    with CCONV_STRICT_PLUGINS=1); any other failing plugin raises PluginError.
    """
    check_hooks(pm)
    regs = Registries(pm, forced)
    for name, plugin in pm.list_name_plugin():
        if plugin is None:  # blocked
            continue
        try:
            _collect(pm, regs, name, plugin)
        except Exception as exc:
            source = pm.sources.get(name, "?")
            if name not in pm.isolated:
                if isinstance(exc, PluginError):
                    raise
                raise PluginError(f"cconv plugin {name!r} (from {source}) failed to "
                                  f"register: {type(exc).__name__}: {exc}") from exc
            pm.failed[name] = report(name, source, "failed to register", exc)
            pm.unregister(plugin)
            pm.set_blocked(name)   # a rebuild must not run (and report) it again
    regs.generation = pm.generation
    return regs


# ---------------------------------------------------------------- default state

_lock = threading.RLock()
_pm = None          # the default plugin manager, made on first use
_current = None     # Registries built from _pm
_forced = {}        # op -> forced kernel name; survives rebuilds, cleared by reset()


def get_plugin_manager():
    """The default plugin manager (made on first use: built-ins + entry points)."""
    global _pm
    if _pm is None:
        with _lock:
            if _pm is None:
                _pm = make_plugin_manager()
    return _pm


def registry():
    """The registries of the default manager, rebuilt when a plugin came or went."""
    global _current
    regs = _current
    if regs is None or regs.generation != regs.pm.generation:
        with _lock:
            pm = get_plugin_manager()
            regs = _current
            if regs is None or regs.pm is not pm or regs.generation != pm.generation:
                regs = _current = build_registries(pm, _forced)
    return regs


def register_plugin(plugin, name=None):
    """Register a plugin object or module with the default manager; returns its name.

    Errors (a misspelt hook, a duplicate name, a hook that raises) raise
    here, naming the plugin, and leave the plugin unregistered.
    """
    pm = get_plugin_manager()
    with _lock:
        try:
            name = pm.register(plugin, name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"cannot register plugin {name or plugin!r}: {exc}") from exc
        try:
            check_hooks(pm)
            registry()
        except BaseException:
            pm.unregister(plugin)
            raise
    return name


def unregister_plugin(plugin_or_name):
    """Remove a plugin (object or name) from the default manager; registries follow."""
    pm = get_plugin_manager()
    with _lock:
        if isinstance(plugin_or_name, str):
            return pm.unregister(name=plugin_or_name)
        return pm.unregister(plugin_or_name)


def reset(manager=True):
    """Forget forced kernels and the registries; with manager, the plugin manager too.

    The next use builds everything again (re-reading the environment). For tests.
    """
    global _pm, _current
    with _lock:
        _forced.clear()
        _current = None
        if manager:
            _pm = None


# ---------------------------------------------------------------- lookups

def get_layer_class(type_name):
    """The layer class registered under type_name; UnknownNameError lists the known ones."""
    return registry().layers[type_name]


def get_optimizer_class(name):
    """The optimizer class registered under name (case-insensitive)."""
    return registry().optimizers[name]


def get_weight_loader(name):
    """The weight-loader function registered under name: path -> dict of arrays."""
    return registry().weight_loaders[name]


def find_weight_loader(path):
    """The weight-loader function whose suffixes match path's ending."""
    lowered = os.fspath(path).lower()
    loaders = registry().weight_loaders
    for entry in loaders.entries():
        if any(lowered.endswith(s) for s in entry.info.get("suffixes", ())):
            return entry.obj
    known = sorted({s for e in loaders.entries() for s in e.info.get("suffixes", ())})
    raise UnknownNameError(f"no weight loader handles {os.fspath(path)!r}; known suffixes: "
                           f"{', '.join(known) or 'none'}")


# ---------------------------------------------------------------- kernels

def select_kernel(op, *args, **op_args):
    """The Kernel that run_kernel(op, *args, **op_args) would run."""
    return registry().kernels.select(op, args, op_args)


def run_kernel(op, *args, **kwargs):
    """Run op with the selected kernel: the forced one, else the best that supports the call.

    The choice is cached per (op, shapes, dtypes, other arguments); where all
    the kernels that could win are one function (the built-ins alone), that
    function runs without any lookup but the op's.
    """
    regs = _current
    if regs is None or regs.generation != regs.pm.generation:
        regs = registry()
    kernels = regs.kernels
    function = kernels.static.get(op) or kernels.select(op, args, kwargs).function
    return function(*args, **kwargs)


def static_kernel(op):
    """The one function every call of op runs now, or None when calls are chosen per call.

    Planned fast paths (a layer's plan_forward) use the built-in kernel directly
    only while it is what run_kernel would pick anyway, so a plugin kernel or a
    forced one always takes over.
    """
    regs = _current
    if regs is None or regs.generation != regs.pm.generation:
        regs = registry()
    return regs.kernels.static.get(op)


def force_kernel(op, name):
    """Always run kernel `name` for op (process-wide); None restores automatic selection."""
    with _lock:
        registry().kernels.force(op, name)


def forced_kernels():
    """op -> forced kernel name."""
    return dict(_forced)


@contextlib.contextmanager
def use_kernel(op, name):
    """Force kernel `name` for op inside the block, then restore the previous choice."""
    previous = _forced.get(op)
    force_kernel(op, name)
    try:
        yield registry().kernels.get(op, name)
    finally:
        force_kernel(op, previous)


# ---------------------------------------------------------------- listing

def describe():
    """JSON-ready listing of plugins and everything they registered (for `cconv plugins`)."""
    regs = registry()
    pm = regs.pm
    plugins = [{"name": name, "package": pm.sources.get(name, "?"), "status": "ok"}
               for name, plugin in pm.list_name_plugin() if plugin is not None]
    plugins += [{"name": name, "package": pm.sources.get(name, "?"), "status": "failed",
                  "error": why} for name, why in pm.failed.items()]

    def entries(reg, extra=lambda e: {}):
        return [dict({"name": e.name, "package": e.source, "plugin": e.plugin,
                      "object": _qualname(e.obj)}, **extra(e)) for e in reg.entries()]

    kernels = [{"op": k.op, "name": k.name, "priority": k.priority, "package": k.source,
                "plugin": k.plugin, "forced": regs.kernels.forced(op) == k.name,
                "description": k.description}
               for op in regs.kernels.ops() for k in regs.kernels.kernels(op)]
    return {
        "plugins": plugins,
        "layers": entries(regs.layers),
        "kernels": kernels,
        "optimizers": entries(regs.optimizers),
        "weight_loaders": entries(regs.weight_loaders,
                                  lambda e: {"suffixes": list(e.info.get("suffixes", ()))}),
    }


def _qualname(obj):
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None) or repr(obj)
    return f"{module}.{name}" if module else name
