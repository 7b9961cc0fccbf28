"""Models as bytes: what travels to the workers, and the per-worker cache of loaded nets.

The bytes are exactly a `cconv.save` file (safetensors weights + JSON config),
so a worker rebuilds the net with `cconv.load`: layers from plugins load on a
worker whenever the plugin is installed there.
"""
import collections
import contextlib
import hashlib
import os
import tempfile
import threading

import numpy as np

import cconv

__all__ = ["aligned", "borrowed_net", "digest_of", "load_count", "model_bytes", "net_from_bytes"]

# Idle loaded nets per model digest, most recently used last. A task borrows
# one for its run: a net's forward keeps per-call plans and buffers, so two
# Dask threads must not share one, and Dask may run tasks on new threads.
_idle = collections.OrderedDict()
_idle_lock = threading.Lock()
_MAX_MODELS = 4
_loads = 0
_loads_lock = threading.Lock()


def _looks_like_net(obj):
    return hasattr(obj, "get_config") and hasattr(obj, "named_parameters")


def model_bytes(model):
    """(bytes of a cconv.save file, the net) from a net, a saved model's path or such bytes."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        data = bytes(model)
        return data, net_from_bytes(data)
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"model: no saved model at {path!r}")
        net = cconv.load(path)  # every problem with the file shows here, not on a worker
        with open(path, "rb") as f:
            return f.read(), net
    if _looks_like_net(model):
        with tempfile.TemporaryDirectory(prefix="cconv-dask-") as tmp:
            path = os.path.join(tmp, "model.safetensors")
            cconv.save(model, path)
            with open(path, "rb") as f:
                return f.read(), model
    raise TypeError(f"model must be a cconv net, a path to a file written by cconv.save, or "
                    f"its bytes; got {type(model).__name__}")


def net_from_bytes(data):
    """The net stored in the bytes of a cconv.save file."""
    global _loads
    with tempfile.TemporaryDirectory(prefix="cconv-dask-") as tmp:
        path = os.path.join(tmp, "model.safetensors")
        with open(path, "wb") as f:
            f.write(data)
        net = cconv.load(path)
    with _loads_lock:
        _loads += 1
    return net


def aligned(array, dtype=None):
    """array as a C-contiguous, aligned numpy array (a copy only when needed).

    Arrays that Dask deserializes from network frames can start at an odd
    address; cconv's kernels refuse unaligned data, so tasks align their inputs.
    """
    return np.require(array, dtype=dtype, requirements=["C", "A"])


def digest_of(data):
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def borrowed_net(data, digest):
    """A net for these bytes, loaded at most once per concurrently running task."""
    with _idle_lock:
        nets = _idle.get(digest)
        net = nets.pop() if nets else None
    if net is None:
        net = net_from_bytes(data)
    try:
        yield net
    finally:
        with _idle_lock:
            _idle.setdefault(digest, []).append(net)
            _idle.move_to_end(digest)
            while len(_idle) > _MAX_MODELS:
                _idle.popitem(last=False)


def load_count():
    """How many times this process has rebuilt a net from bytes (tests check the cache)."""
    return _loads
