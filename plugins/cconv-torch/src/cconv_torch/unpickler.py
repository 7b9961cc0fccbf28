"""A pickle reader that can rebuild PyTorch tensors and nothing else.

Unpickling calls whatever callables the pickle names, so a checkpoint from
an untrusted source could run `os.system(...)` the moment it is loaded.
Here every global the pickle asks for is looked up in ALLOWED, which maps it
to one of *our* functions or markers (never the real torch object: torch is
not imported). Any other global is refused with UnsafePickleError naming it,
before anything is called.

Before the unpickler sees the bytes, `scan_pickle` walks the opcodes with
pickletools: every length the pickle declares (a string, a bytes object, a
long) is checked against the bytes really there, so a corrupt length can
not make the C unpickler allocate gigabytes up front; and pickle_scan
replays them on a model of the objects, refusing deep nesting, runaway
sharing, huge integers, too many objects and BUILD on anything but an
OrderedDict, before the real unpickler (which trusts its input) runs.
"""
import collections
import io
import pickle
import re
import reprlib

import numpy as np

from cconv.io import WeightFileError

from . import pickle_scan

__all__ = [
    "ALLOWED",
    "StorageType",
    "TensorRef",
    "TorchFileError",
    "UnsafePickleError",
    "restricted_load",
    "scan_pickle",
]


_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 60
_repr.maxlevel = 3


def short(value):
    """A bounded repr of an untrusted value, for error messages."""
    return _repr.repr(value)


class TorchFileError(WeightFileError):
    """A file that is not a readable PyTorch checkpoint (names the path and the problem)."""


class UnsafePickleError(TorchFileError):
    """The pickle asks for a global outside the allow-list; nothing was called."""

    def __init__(self, path, module, name):
        super().__init__(
            path, f"refusing to load: the pickle asks for the global {module}.{name}, which "
                  f"is not needed to rebuild tensors (only tensor rebuild functions, "
                  f"storage types, OrderedDict and plain containers are allowed). The file "
                  f"may run code when loaded with plain pickle/torch.load; if it holds a "
                  f"whole model object, save model.state_dict() instead")
        self.global_name = f"{module}.{name}"


class _Frozen:
    """Objects the pickle gets from find_class: BUILD (setstate) on them is refused.

    Without this a pickle could BUILD attributes onto a shared marker or
    one of our functions and change how later files are read.
    """

    __slots__ = ()

    def __setstate__(self, state):
        raise pickle.UnpicklingError(f"the pickle tries to set the state of {self!r}")


class StorageType(_Frozen):
    """Stands in for torch.FloatStorage & co.: just the element dtype of the storage."""

    __slots__ = ("dtype", "name")

    def __init__(self, name, dtype):
        self.name, self.dtype = name, dtype

    def __repr__(self):
        return f"torch.{self.name}"


class DType(_Frozen):
    """Stands in for torch.float32 & co. (the dtype argument of _rebuild_tensor_v3)."""

    __slots__ = ("dtype", "name")

    def __init__(self, name, dtype):
        self.name, self.dtype = name, dtype

    def __repr__(self):
        return f"torch.{self.name}"


class _Callable(_Frozen):
    """An allowed callable (one of ours, or a plain container type), frozen."""

    __slots__ = ("function", "qualname")

    def __init__(self, qualname, function):
        self.qualname, self.function = qualname, function

    def __call__(self, *args):
        return self.function(*args)

    def __repr__(self):
        return self.qualname


# bfloat16 has no numpy dtype: read the raw 16-bit words, widen to float32 later.
BF16 = "bfloat16"

_STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2",
    "BFloat16Storage": BF16, "LongStorage": "<i8", "IntStorage": "<i4",
    "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
    "ComplexFloatStorage": "<c8", "ComplexDoubleStorage": "<c16", "UntypedStorage": "u1",
}
_TORCH_DTYPES = {
    "float32": "<f4", "float": "<f4", "float64": "<f8", "double": "<f8",
    "float16": "<f2", "half": "<f2", "bfloat16": BF16, "int64": "<i8", "long": "<i8",
    "int32": "<i4", "int": "<i4", "int16": "<i2", "short": "<i2", "int8": "i1",
    "uint8": "u1", "bool": "?", "uint16": "<u2", "uint32": "<u4", "uint64": "<u8",
    "complex64": "<c8", "complex128": "<c16",
}


_TENSOR_TYPE = re.compile(r"^(\w*Storage|float8\w*|float4\w*|bits\w*|q?u?int\d+\w*|"
                          r"complex32|chalf)$")


class TensorRef:
    """A tensor as the pickle describes it: a view (offset, size, stride) of a storage.

    Turned into a numpy array only after every size is checked against the
    storage's real bytes (see reader.materialize).
    """

    __slots__ = ("dtype", "offset", "size", "storage", "stride")

    def __init__(self, storage, offset, size, stride, dtype=None):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride
        self.dtype = dtype   # v3 only: the element type over an untyped storage

    def __setstate__(self, state):   # pickle BUILD must not rewrite a tensor's view
        raise pickle.UnpicklingError("the pickle tries to set the state of a tensor")


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None):
    if not isinstance(dtype, DType):
        raise pickle.UnpicklingError(f"_rebuild_tensor_v3: dtype argument is {short(dtype)}")
    return TensorRef(storage, storage_offset, size, stride, dtype=dtype)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data   # an nn.Parameter is its tensor for our purposes


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return data


def _size(*args):
    return tuple(args[0]) if len(args) == 1 else tuple(args)


def _codecs_encode(text, encoding="latin1"):
    # Protocol-2 pickles store bytes as _codecs.encode(str, "latin1"); any
    # other codec (zlib, bz2...) could decompress a bomb, so only latin1 passes.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode only with latin1 text, got "
                                     f"{type(text).__name__} and {short(encoding)}")
    return text.encode("latin1")


ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("torch", "Size"): _size,
    ("builtins", "set"): set, ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex, ("__builtin__", "set"): set,
    ("_codecs", "encode"): _codecs_encode,
}
for _name, _dt in _STORAGE_DTYPES.items():
    ALLOWED[("torch", _name)] = StorageType(_name, _dt)
    ALLOWED[("torch.storage", _name)] = ALLOWED[("torch", _name)]
for _name, _dt in _TORCH_DTYPES.items():
    ALLOWED[("torch", _name)] = DType(_name, _dt)


def scan_pickle(path, data, start, what):
    """Index just past the pickle that starts at data[start]; every length and budget checked.

    Raises TorchFileError (naming `what`) for a truncated or malformed pickle,
    or one beyond a budget of pickle_scan (depth, objects, memo, memory,
    expansion, integer size, BUILD targets).
    """
    try:
        return pickle_scan.scan(data, start)
    except pickle_scan.PickleBudgetError as exc:
        raise TorchFileError(path, f"{what}: {exc}") from None
    except (ValueError, EOFError, UnicodeDecodeError, OverflowError) as exc:
        raise TorchFileError(path, f"{what} is not a valid pickle (truncated or corrupt "
                                   f"file?): {exc}") from None


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, stream, path, persistent_load):
        super().__init__(stream, encoding="utf-8")
        self._path, self._persistent = path, persistent_load

    def find_class(self, module, name):
        obj = ALLOWED.get((module, name))
        if obj is None:
            if module in ("torch", "torch.storage") and _TENSOR_TYPE.match(name):
                # a tensor type we cannot turn into numpy: not unsafe, unsupported
                raise TorchFileError(self._path, f"unsupported tensor type {module}.{name} "
                                                 f"(readable: float16/32/64, bfloat16, "
                                                 f"integer, bool and complex tensors)")
            raise UnsafePickleError(self._path, module, name)
        if isinstance(obj, _Frozen):
            return obj
        return _Callable(f"{module}.{name}", obj)

    def persistent_load(self, pid):
        if self._persistent is None:
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        return self._persistent(pid)


def restricted_load(path, data, start, what, persistent_load=None):
    """(object, end index): unpickle data[start:] with only ALLOWED globals.

    persistent_load(pid) resolves the storage references of a tensor pickle.
    """
    end = scan_pickle(path, data, start, what)
    stream = io.BytesIO(memoryview(data)[start:end])
    try:
        return _RestrictedUnpickler(stream, path, persistent_load).load(), end
    except TorchFileError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, ImportError, RecursionError, MemoryError,
            OverflowError) as exc:   # OverflowError: a FRAME length beyond 2**63
        raise TorchFileError(path, f"{what} cannot be unpickled: "
                                   f"{type(exc).__name__}: {exc}") from None


def numpy_dtype(code):
    """numpy dtype of a storage code (bfloat16: its raw 16-bit words)."""
    return np.dtype("<u2") if code == BF16 else np.dtype(code)
