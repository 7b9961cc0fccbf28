"""Registries of what plugins provide: layers, optimizers, weight loaders, kernels.

Every item remembers where it came from (the package and the plugin that
registered it), so that a conflict names both sides and `cconv plugins` can
list the origin of everything. Kernel selection lives here too: it is a
lookup in these tables, cached per call signature.
"""
from typing import NamedTuple

import numpy as np

from . import autotune as _autotune

__all__ = ["PluginError", "DuplicateNameError", "UnknownNameError",
           "KernelNotSupportedError", "Entry", "Kernel", "Registry", "KernelRegistry"]


class PluginError(Exception):
    """A plugin that cannot be loaded or registered; the message names the plugin."""


class DuplicateNameError(PluginError, ValueError):
    """A name registered twice without override=True; the message names both plugins."""


class UnknownNameError(PluginError, LookupError, ValueError):
    """A name nothing registered; the message lists the known names.

    A LookupError and a ValueError, so that callers catching either (config
    loaders, argument checks) handle it; deliberately not a KeyError, whose
    message would be shown quoted.
    """


class KernelNotSupportedError(PluginError, ValueError):
    """No kernel (or not the forced one) supports the arguments of an op call."""


def _unknown(kind, name, known):
    known = sorted(known)
    import difflib   # only for this message (1.6 ms of import otherwise)
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return UnknownNameError(f"unknown {kind} {name!r}{hint}; known: {', '.join(known) or 'none'}")


# Entry and Kernel are immutable records. NamedTuple, not a frozen dataclass:
# the dataclass module and its two decorators took 3 ms of `import cconv`
# (a sixth of the package's own import), a named tuple 0.4 ms.
class Entry(NamedTuple):
    """A registered layer class, optimizer class or weight-loader function."""

    name: str
    obj: object
    source: str          # distribution that provided it; "cconv" for the built-ins
    plugin: str          # name of the plugin (in the plugin manager) that registered it
    info: dict           # kind-specific: loader suffixes, ...
    replaced: str = ""   # origin of the entry this one overrode, if any

    @property
    def origin(self):
        return f"plugin {self.plugin!r} from {self.source}"


class Registry:
    """name -> Entry for one kind of item; `reg[name]` is the registered object."""

    def __init__(self, kind, case_sensitive=True):
        self.kind = kind
        self._entries = {}
        self._key = str if case_sensitive else str.casefold

    def check_new(self, name, origin, override):
        """Raise DuplicateNameError unless name is free or override is set."""
        old = self._entries.get(self._key(name))
        if old is not None and not override:
            raise DuplicateNameError(
                f"{self.kind} {name!r} is registered twice: by {old.origin} and by "
                f"{origin}; pass override=True to register() to replace the first")

    def add(self, entry, override=False):
        self.check_new(entry.name, entry.origin, override)
        old = self._entries.get(self._key(entry.name))
        if old is not None:
            entry = Entry(entry.name, entry.obj, entry.source, entry.plugin, entry.info,
                          replaced=old.origin)
        self._entries[self._key(entry.name)] = entry

    def entry(self, name):
        try:
            return self._entries[self._key(name)]
        except (KeyError, TypeError):
            raise _unknown(self.kind, name, self.names()) from None

    def __getitem__(self, name):
        return self.entry(name).obj

    def __contains__(self, name):
        return isinstance(name, str) and self._key(name) in self._entries

    def __iter__(self):
        return iter(self.names())

    def __len__(self):
        return len(self._entries)

    def names(self):
        return sorted(e.name for e in self._entries.values())

    def entries(self):
        return sorted(self._entries.values(), key=lambda e: e.name.casefold())


class Kernel(NamedTuple):
    """One implementation of an op."""

    op: str
    name: str
    function: object
    supports: object     # callable(*args, **kwargs) -> bool, or None for "everything"
    priority: float
    source: str
    plugin: str
    description: str = ""
    order: int = 0       # registration order: breaks priority ties (first wins)

    @property
    def origin(self):
        return f"plugin {self.plugin!r} from {self.source}"

    def supports_call(self, args, kwargs):
        if self.supports is None:
            return True
        try:
            return bool(self.supports(*args, **kwargs))
        except Exception as exc:  # a bug in the plugin, not a "no"
            raise PluginError(f"supports() of kernel {self.op}/{self.name} ({self.origin}) "
                              f"raised {type(exc).__name__}: {exc}") from exc


def _describe(value):
    if isinstance(value, np.ndarray):
        return f"{value.dtype}{list(value.shape)}"
    return repr(value)


def describe_call(args, kwargs):
    """'float32[1, 3, 8, 8], float32[4, 3, 3, 3], stride=1' for error messages."""
    parts = [_describe(a) for a in args] + [f"{k}={_describe(v)}" for k, v in kwargs.items()]
    return ", ".join(parts)


_ndarray = np.ndarray


def call_key(op, args, kwargs):
    """Hashable key of a call: arrays by (shape, dtype number), the rest by value.

    On the hot path of every layer: kept to one pass and small ints (a dtype's
    number hashes much faster than the dtype; byte order is not part of it).
    """
    key = [op]
    for a in args:
        key.append((a.shape, a.dtype.num) if isinstance(a, _ndarray) else a)
    key.extend(kwargs.items())
    return tuple(key)


def _keyword_arrays_key(op, args, kwargs):
    """call_key for calls passing arrays by keyword (rarer, so not on the fast path)."""
    items = {k: ((v.shape, v.dtype.num) if isinstance(v, _ndarray) else v)
             for k, v in kwargs.items()}
    return call_key(op, args, items)


class KernelRegistry:
    """op -> {kernel name -> Kernel}, with user-forced choices and a selection cache."""

    # Calls with ever-new shapes must not grow the cache without bound.
    MAX_CACHED = 4096

    def __init__(self, forced=None):
        self._ops = {}
        self._ranked = {}
        self._forced = {} if forced is None else forced   # op -> kernel name (shared)
        self._cache = {}
        self._count = 0
        # op -> the function every call runs, for ops where there is nothing to
        # choose: each kernel that could win is the same function (the C core
        # and its named special paths). run_kernel then skips the call key.
        self.static = {}

    # ---- registration
    def check_new(self, op, name, origin, override):
        old = self._ops.get(op, {}).get(name)
        if old is not None and not override:
            raise DuplicateNameError(
                f"kernel {name!r} for op {op!r} is registered twice: by {old.origin} and by "
                f"{origin}; pass override=True to register() to replace the first")

    def add(self, kernel, override=False):
        self.check_new(kernel.op, kernel.name, kernel.origin, override)
        self._count += 1
        kernels = self._ops.setdefault(kernel.op, {})
        old = kernels.get(kernel.name)
        order = old.order if old is not None else self._count
        kernels[kernel.name] = Kernel(kernel.op, kernel.name, kernel.function, kernel.supports,
                                      kernel.priority, kernel.source, kernel.plugin,
                                      kernel.description, order)
        self._ranked[kernel.op] = sorted(kernels.values(), key=lambda k: (-k.priority, k.order))
        self._changed()

    def _changed(self):
        self._cache.clear()
        self.static = {}
        tuner = _autotune.active()
        for op, ranked in self._ranked.items():
            if op in self._forced:   # a forced kernel may refuse a call: always check
                continue
            if tuner is not None and len({id(k.function) for k in ranked
                                          if k.priority > _autotune.MIN_PRIORITY}) > 1:
                continue             # autotuning chooses per call signature
            for kernel in ranked:
                if kernel.function is not ranked[0].function:
                    break
                if kernel.supports is None:  # the first one that takes every call
                    self.static[op] = kernel.function
                    break

    def refresh(self):
        """Forget cached selections (after autotuning was switched on or off)."""
        self._changed()

    # ---- queries
    def ops(self):
        return sorted(self._ops)

    def __contains__(self, op):
        return op in self._ops

    def kernels(self, op):
        """The kernels of op, in selection order (highest priority first)."""
        try:
            return list(self._ranked[op])
        except KeyError:
            raise _unknown("op", op, self._ops) from None

    def get(self, op, name):
        kernels = self._ops.get(op)
        if kernels is None:
            raise _unknown("op", op, self._ops)
        try:
            return kernels[name]
        except KeyError:
            raise _unknown(f"kernel for op {op!r}", name, kernels) from None

    # ---- forcing
    def force(self, op, name):
        """Always use kernel `name` for op (None: back to automatic selection)."""
        if name is None:
            self._forced.pop(op, None)
        else:
            self.get(op, name)
            self._forced[op] = name
        self._changed()

    def forced(self, op):
        return self._forced.get(op)

    # ---- selection
    def select(self, op, args, kwargs):
        """The kernel that runs op(*args, **kwargs); cached per call_key."""
        key = call_key(op, args, kwargs)
        try:
            return self._cache[key]
        except KeyError:
            pass
        except TypeError:  # an array passed by keyword, or an unhashable argument (a list)
            key = _keyword_arrays_key(op, args, kwargs)
            try:
                return self._cache[key]
            except KeyError:
                pass
            except TypeError:
                return self._select(op, args, kwargs)
        kernel = self._select(op, args, kwargs)
        if len(self._cache) >= self.MAX_CACHED:
            self._cache.clear()
        self._cache[key] = kernel
        return kernel

    def _select(self, op, args, kwargs):
        ranked = self.kernels(op)
        forced = self._forced.get(op)
        if forced is not None:
            kernel = self.get(op, forced)
            if kernel.supports_call(args, kwargs):
                return kernel
            able = [k.name for k in ranked if k.supports_call(args, kwargs)]
            raise KernelNotSupportedError(
                f"kernel {forced!r} is forced for op {op!r} but does not support the call "
                f"{op}({describe_call(args, kwargs)}); kernels that do: "
                f"{', '.join(able) or 'none'}")
        tuner = _autotune.active()
        if tuner is not None:
            able = [k for k in ranked if k.priority > _autotune.MIN_PRIORITY
                    and k.supports_call(args, kwargs)]
            if len({id(k.function) for k in able}) > 1:
                return tuner.choose(op, able, args, kwargs)
        for kernel in ranked:
            if kernel.supports_call(args, kwargs):
                return kernel
        raise KernelNotSupportedError(
            f"no kernel supports {op}({describe_call(args, kwargs)}); registered for "
            f"{op!r}: {', '.join(k.name for k in ranked)}")
