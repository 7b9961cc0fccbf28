"""Autotuning: time the kernels that could run a call, once per call signature, keep the fastest.

Off by default: kernel selection is then by priority (cconv.plugins). On,
every op call whose candidates are more than one distinct function
(kernels with priority above MIN_PRIORITY that support the call: the numpy
references at -100 never compete) is timed once per (op, shapes, dtypes,
other arguments, thread count), and the choice is cached in memory and,
optionally, in a JSON file keyed by the machine as well, so the next
process skips the timing. A forced kernel (plugins.use_kernel) still wins.

    CCONV_AUTOTUNE=1                  turn it on (read at the first kernel selection)
    CCONV_AUTOTUNE_CACHE=path         the cache file (default ~/.cache/cconv/autotune.json;
                                      empty: keep the choices in memory only)

or in code: `cconv.autotune.enable(cache_path=..., timer=...)`, `disable()`,
or `with cconv.autotune.tuning(...)`. The file is written atomically; entries
that name a kernel no longer registered, or that do not parse, are ignored
and timed again. Kernels are timed on the call's own arguments, so they must
be pure functions of them (the contract of register_kernels).
"""
import contextlib
import os
import platform
import tempfile
import threading
import time

__all__ = ["Tuner", "active", "enable", "disable", "tuning", "reset", "default_timer",
           "default_cache_path", "MIN_PRIORITY", "ENV_ENABLE", "ENV_CACHE"]

ENV_ENABLE = "CCONV_AUTOTUNE"
ENV_CACHE = "CCONV_AUTOTUNE_CACHE"
MIN_PRIORITY = -50          # kernels at or below never compete (the references: -100)
CACHE_FORMAT = "cconv.autotune"
CACHE_VERSION = 1


def _json():
    import json   # on the disk cache's first use: it cost 2 ms of `import cconv`
    return json


def default_cache_path():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "cconv", "autotune.json")


def default_timer(kernel, args, kwargs, repeats=3, min_time=2e-3):
    """Seconds per call of kernel.function(*args, **kwargs): best of `repeats` samples.

    One warm-up call first (first-touch allocations, caches); each sample
    loops long enough (min_time) for the clock to resolve a tiny call.
    """
    fn = kernel.function
    t0 = time.perf_counter()
    fn(*args, **kwargs)
    first = time.perf_counter() - t0
    loops = max(1, min(1000, int(min_time / max(first, 1e-7))))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(loops):
            fn(*args, **kwargs)
        best = min(best, (time.perf_counter() - t0) / loops)
    return best


def machine_id():
    """CPU model and core count: choices measured on one machine do not carry to another."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}/{os.cpu_count()}cpu"


def _describe_arg(a):
    shape, dtype = getattr(a, "shape", None), getattr(a, "dtype", None)
    if shape is not None and dtype is not None:
        return f"{dtype.str}{list(shape)}"
    return repr(a)


def signature(op, args, kwargs, threads):
    """A stable text key of a call: op, array shapes/dtypes, other arguments, threads."""
    parts = [_describe_arg(a) for a in args]
    parts += [f"{k}={_describe_arg(v)}" for k, v in sorted(kwargs.items())]
    return f"{op}({', '.join(parts)})@{threads}t"


class Tuner:
    """Times candidate kernels and remembers the fastest per call signature.

    timer(kernel, args, kwargs) -> seconds (default_timer; inject a fake one
    in tests). cache_path: JSON file shared between processes, or None.
    """

    def __init__(self, cache_path=None, timer=None, machine=None):
        self.cache_path = os.fspath(cache_path) if cache_path else None
        self.timer = timer or default_timer
        self.machine = machine or machine_id()
        self.choices = {}       # signature -> kernel name
        self.timings = {}       # signature -> {kernel name: seconds}
        self._lock = threading.Lock()
        self._loaded = {}       # the file's entries for this machine
        if self.cache_path:
            self._loaded = self._read()

    # ---- the file
    def _read(self):
        try:
            with open(self.cache_path, encoding="utf-8") as f:
                data = _json().load(f)
        except (OSError, ValueError):
            return {}          # missing or corrupt: start over (rewritten on the next choice)
        if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
            return {}
        entries = data.get("machines", {}).get(self.machine, {})
        if not isinstance(entries, dict):
            return {}
        return {k: v for k, v in entries.items()
                if isinstance(k, str) and isinstance(v, dict) and isinstance(v.get("kernel"), str)}

    def _write(self):
        """Merge this tuner's choices into the file, atomically (temp file + rename)."""
        path = self.cache_path
        try:
            with open(path, encoding="utf-8") as f:
                data = _json().load(f)
            if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
                raise ValueError
        except (OSError, ValueError):
            data = {}
        machines = data.get("machines") if isinstance(data.get("machines"), dict) else {}
        mine = machines.get(self.machine) if isinstance(machines.get(self.machine), dict) else {}
        for sig, name in self.choices.items():
            mine[sig] = {"kernel": name, "seconds": self.timings.get(sig, {})}
        machines[self.machine] = mine
        out = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "machines": machines}
        directory = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(directory, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".autotune-", suffix=".tmp", dir=directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    _json().dump(out, f, indent=1, sort_keys=True)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError:
            pass    # a read-only cache location costs only the timing next time

    # ---- choosing
    def choose(self, op, candidates, args, kwargs):
        """The fastest of candidates (Kernel objects, priority order) for this call."""
        from ._threads import get_num_threads

        sig = signature(op, args, kwargs, get_num_threads())
        by_name = {k.name: k for k in candidates}
        name = self.choices.get(sig)
        if name is None:
            entry = self._loaded.get(sig)
            name = entry["kernel"] if entry else None
            if name in by_name:
                self.choices[sig] = name
        if name in by_name:
            return by_name[name]
        return self._measure(sig, candidates, args, kwargs)

    def _measure(self, sig, candidates, args, kwargs):
        with self._lock:
            times = {}
            seen = {}
            for k in candidates:
                if id(k.function) in seen:   # the same function under two names: time once
                    times[k.name] = times[seen[id(k.function)]]
                    continue
                seen[id(k.function)] = k.name
                try:
                    times[k.name] = float(self.timer(k, args, kwargs))
                except Exception:   # a kernel that fails here fails on the real call too
                    times[k.name] = float("inf")
            # ties and total failure go to priority order (candidates are ranked)
            best = min(candidates, key=lambda k: times[k.name])
            self.choices[sig] = best.name
            self.timings[sig] = {n: (t if t != float("inf") else None) for n, t in times.items()}
            if self.cache_path:
                self._write()
        return best


# ---------------------------------------------------------------- process-wide switch

_state = {"tuner": None, "from_env": False}
_switch_lock = threading.Lock()


def active():
    """The Tuner in use, or None (autotuning off). The environment is read on first use."""
    if not _state["from_env"]:
        with _switch_lock:
            if not _state["from_env"]:
                _state["from_env"] = True
                _state["tuner"] = None
                if os.environ.get(ENV_ENABLE, "").strip().lower() in ("1", "true", "yes", "on"):
                    path = os.environ.get(ENV_CACHE)
                    _state["tuner"] = Tuner(default_cache_path() if path is None else path)
    return _state["tuner"]


def reset():
    """Forget the setting: the next selection reads the environment again (for tests)."""
    with _switch_lock:
        _state["from_env"] = False
        _state["tuner"] = None
    _refresh_registry()


def _refresh_registry():
    """Selections cached under the old setting are dropped (kernels.static too)."""
    from . import plugins

    regs = plugins._current
    if regs is not None:
        regs.kernels.refresh()


def enable(cache_path=None, timer=None, tuner=None):
    """Turn autotuning on (a given Tuner, or a new one); returns the Tuner."""
    with _switch_lock:
        _state["from_env"] = True
        _state["tuner"] = tuner or Tuner(cache_path, timer)
    _refresh_registry()
    return _state["tuner"]


def disable():
    with _switch_lock:
        _state["from_env"] = True
        _state["tuner"] = None
    _refresh_registry()


@contextlib.contextmanager
def tuning(cache_path=None, timer=None, tuner=None):
    """Autotuning on inside the block, then back to the previous setting."""
    active()
    previous = _state["tuner"]
    t = enable(cache_path, timer, tuner)
    try:
        yield t
    finally:
        with _switch_lock:
            _state["tuner"] = previous
        _refresh_registry()
