"""Read PyTorch checkpoints (torch.save output) into numpy arrays, without torch.

Two formats:

* zip (torch >= 1.6, the default): ``<root>/data.pkl`` is the pickled object,
  whose tensors refer to storages by key; storage ``k`` is the uncompressed
  entry ``<root>/data/k``; ``<root>/byteorder`` says "little" or "big".
* legacy (``_use_new_zipfile_serialization=False``, and torch < 1.6): five
  things back to back: pickle(magic number), pickle(protocol version 1001),
  pickle(sys_info), the pickled object, pickle(sorted storage keys), then per
  key an int64 little-endian element count and the storage's raw bytes.

A tensor is a view of a storage: element offset, size and stride. Every one
of those numbers is checked against the storage's actual bytes before an
array is made, and sizes declared anywhere in the file are checked against
what the file really holds before anything is allocated.
"""
import math
import os
import pickle
import struct
import zipfile

import numpy as np

from .unpickler import (
    BF16,
    StorageType,
    TensorRef,
    TorchFileError,
    numpy_dtype,
    restricted_load,
    short,
)

__all__ = ["WRAPPER_KEYS", "find_state_dict", "load_torch", "read_checkpoint"]

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
_ZIP_MAGIC = b"PK\x03\x04"
MAX_NDIM = 32   # numpy's limit on older versions

#: keys under which training scripts wrap the state_dict, tried in this order
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network",
                "weights", "params")


class _Storage:
    """One storage: its element dtype code and where its bytes are.

    `load()` returns the bytes (read once, shared by every tensor viewing it).
    Slots and a refusing __setstate__: pickle BUILD must never reach it (it
    could change numel, start or base, and with them the byte budget).
    """

    __slots__ = ("_data", "_load", "base", "code", "key", "numel", "start")

    def __setstate__(self, state):
        raise pickle.UnpicklingError("the pickle tries to set the state of a storage")

    def __init__(self, key, code, numel, load):
        self.key, self.code, self.numel, self._load, self._data = key, code, numel, load, None
        self.base, self.start = self, 0   # legacy storage views point into a root storage

    def data(self):
        if self.base is not self:
            return self.base.data()
        if self._data is None:
            self._data = self._load(self)
        return self._data


def _key(k):
    """A dict key as part of a tensor name (bounded: keys come from the file)."""
    return k if isinstance(k, str) else str(k) if isinstance(k, int) else short(k)


#: sizes, strides, offsets and element counts are bounded before any arithmetic
MAX_INT = 2**48


def _check_int(path, what, value, low=0):
    # the bound first: a 2 MB integer would make every product crawl
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= MAX_INT:
        shown = _int_repr(value) if isinstance(value, int) else short(value)
        raise TorchFileError(path, f"{what} must be an integer in [{low}, 2**48], got {shown}")
    return value


def _int_repr(value):
    """A bounded repr of an int (str() of a 2 MB integer takes minutes)."""
    bits = value.bit_length()
    return str(value) if bits <= 64 else f"an integer of {bits} bits"


def _storage_id(path, pid, legacy):
    """(storage type, key, numel, view metadata) of a persistent id, checked."""
    n = 6 if legacy else 5
    if not isinstance(pid, tuple) or len(pid) != n or pid[0] not in ("storage", b"storage"):
        kind = pid[0] if isinstance(pid, tuple) and pid else pid
        if kind in ("module", b"module"):
            raise TorchFileError(path, "the file pickles a whole torch.nn.Module (legacy "
                                       "torch.save(model)); save model.state_dict() instead")
        raise TorchFileError(path, f"unknown persistent id {short(pid)} (expected a "
                                   f"{n}-tuple ('storage', type, key, location, numel"
                                   f"{', view' if legacy else ''}))")
    storage_type, key, numel = pid[1], pid[2], pid[4]
    if not isinstance(storage_type, StorageType):
        raise TorchFileError(path, f"storage type {short(storage_type)} is not a torch storage "
                                   f"type")
    if not isinstance(key, str) or not key or len(key) > 200:
        raise TorchFileError(path, f"bad storage key {short(key)}")
    _check_int(path, f"element count of storage {key!r}", numel)
    return storage_type, key, numel, pid[5] if legacy else None


# ---------------------------------------------------------------- tensors

def materialize(path, ref, name, byteorder):
    """The numpy array (C-contiguous, native order, own memory) of a TensorRef."""
    storage = ref.storage
    if not isinstance(storage, _Storage):
        raise TorchFileError(path, f"tensor {name!r}: its storage is {type(storage).__name__}, "
                                   f"not a storage reference")
    code = ref.dtype.dtype if ref.dtype is not None else storage.code
    dtype = numpy_dtype(code).newbyteorder(byteorder)
    size, stride = ref.size, ref.stride
    if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)
            and len(size) <= MAX_NDIM):
        raise TorchFileError(path, f"tensor {name!r}: size {short(size)} and stride {short(stride)} "
                                   f"must be tuples of the same length <= {MAX_NDIM}")
    offset = _check_int(path, f"tensor {name!r}: storage offset", ref.offset)
    for d in size:
        _check_int(path, f"tensor {name!r}: size {short(size)}: every dimension", d)
    for s in stride:
        _check_int(path, f"tensor {name!r}: stride {short(stride)}: every stride", s)
    raw = storage.data()
    start = storage.start * numpy_dtype(storage.code).itemsize
    # elements this tensor may touch: its storage (a legacy view: only its window)
    window = storage.numel * numpy_dtype(storage.code).itemsize
    available = min(len(raw) - start, window) // dtype.itemsize
    count = math.prod(size)
    if count == 0:
        return _finish(np.zeros(size, dtype), code)
    last = offset + sum((d - 1) * s for d, s in zip(size, stride))
    if last >= available:
        raise TorchFileError(path, f"tensor {name!r}: size {size} with stride {stride} at "
                                   f"offset {offset} reaches element {last}, but its storage "
                                   f"{storage.key!r} holds {available} (corrupt file?)")
    if count > available:
        # only stride-0 (expanded) views can be bigger than their storage; copying
        # one could allocate far more than the file holds
        raise TorchFileError(path, f"tensor {name!r}: shape {size} has {count} elements, "
                                   f"more than its storage holds ({available}): an expanded "
                                   f"(stride 0) view; refusing to materialise it")
    flat = np.frombuffer(raw, dtype=dtype, count=available, offset=start)
    view = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=size, strides=tuple(s * dtype.itemsize for s in stride),
        writeable=False)
    return _finish(view, code)


def _finish(view, code):
    if code == BF16:   # bfloat16 is the top half of a float32
        return (view.astype(np.uint32) << 16).view(np.float32)
    return np.array(view, dtype=view.dtype.newbyteorder("="), order="C")


class _Converter:
    """Replaces every TensorRef in the unpickled object by its array.

    The same view (same storage, offset, size, stride, dtype) becomes one
    array however often the pickle repeats it; and the arrays made may total
    at most EXPANSION times the storages' bytes. Without that bound a few
    bytes of pickle (a memo reference and a REDUCE) could ask for another
    copy of a 100 MB storage, again and again.
    """

    EXPANSION = 4

    def __init__(self, path, byteorder, storages):
        self.path, self.byteorder = path, byteorder
        stored = sum(s.numel * numpy_dtype(s.code).itemsize for s in storages)
        self.budget = self.EXPANSION * stored + 2**20
        self.made, self.cache = 0, {}

    def tensor(self, ref, name):
        key = (id(ref.storage), ref.offset, ref.size, ref.stride,
               None if ref.dtype is None else ref.dtype.name)
        try:
            hit = self.cache.get(key)
        except TypeError:   # unhashable size/stride: materialize reports it
            hit = None
        if hit is not None:
            return hit
        sizes_ok = isinstance(ref.size, tuple) and len(ref.size) <= MAX_NDIM and all(
            isinstance(d, int) and 0 <= d <= MAX_INT for d in ref.size)
        count = math.prod(ref.size) if sizes_ok else 0   # else materialize reports it
        code = ref.dtype.dtype if ref.dtype is not None else \
            getattr(ref.storage, "code", "u1")
        nbytes = count * (4 if code == BF16 else numpy_dtype(code).itemsize)
        if self.made + nbytes > self.budget:
            raise TorchFileError(self.path, f"tensor {name!r}: the tensors would need more "
                                            f"than {self.EXPANSION}x the bytes of their "
                                            f"storages ({self.budget} bytes); refusing (the "
                                            f"pickle repeats views of its storages)")
        array = materialize(self.path, ref, name, self.byteorder)
        self.made += array.nbytes
        try:
            self.cache[key] = array
        except TypeError:
            pass
        return array

    def __call__(self, obj, name="", depth=0):
        if depth > 64:
            raise TorchFileError(self.path, f"objects nested more than 64 deep at {name!r}")
        if isinstance(obj, TensorRef):
            return self.tensor(obj, name or "<top>")
        if isinstance(obj, dict):
            out = type(obj)() if type(obj) is not dict else {}
            for k, v in obj.items():
                out[k] = self(v, f"{name}.{_key(k)}" if name else _key(k), depth + 1)
            return out
        if isinstance(obj, (list, tuple)):
            items = [self(v, f"{name}.{i}" if name else str(i), depth + 1)
                     for i, v in enumerate(obj)]
            return items if isinstance(obj, list) else tuple(items)
        if isinstance(obj, _Storage):
            raise TorchFileError(self.path, f"{name or 'the file'} is a bare storage, not a "
                                            f"tensor")
        return obj


# ---------------------------------------------------------------- zip format

def _read_entry(path, zf, info, size_limit):
    if info.compress_type != zipfile.ZIP_STORED:
        raise TorchFileError(path, f"entry {info.filename!r} is compressed; torch.save "
                                   f"writes uncompressed entries (not a torch checkpoint?)")
    if info.file_size != info.compress_size or info.file_size > size_limit:
        raise TorchFileError(path, f"entry {info.filename!r} declares {info.file_size} bytes "
                                   f"but the file has {size_limit} (truncated or corrupt)")
    try:
        return zf.read(info)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError,
            RuntimeError) as exc:
        # NotImplementedError: zipfile's answer to a corrupt "version needed" field;
        # RuntimeError: an entry flagged as encrypted
        raise TorchFileError(path, f"entry {info.filename!r} cannot be read (truncated or "
                                   f"corrupt file?): {exc}") from None


def _check_entry_ranges(path, infos, file_size):
    """Refuse entries whose stored bytes overlap or lie outside the file.

    The central directory may point N entries at one local header: each
    would then re-read the same 8 MB and count as new storage bytes. Each
    entry's range (its local header through its data) comes from the local
    header itself, as zipfile reads it.
    """
    ranges = []
    seen = set()
    with open(path, "rb") as f:
        for info in infos:
            if info.filename in seen:
                raise TorchFileError(path, f"two zip entries are named {info.filename!r}")
            seen.add(info.filename)
            f.seek(info.header_offset)
            head = f.read(30)
            if len(head) != 30 or head[:4] != _ZIP_MAGIC:
                raise TorchFileError(path, f"entry {info.filename!r}: no local header at "
                                           f"byte {info.header_offset} (corrupt zip)")
            name_len, extra_len = struct.unpack("<HH", head[26:30])
            end = info.header_offset + 30 + name_len + extra_len + info.compress_size
            if end > file_size:
                raise TorchFileError(path, f"entry {info.filename!r} ends at byte {end}, "
                                           f"beyond the file's {file_size} (truncated?)")
            ranges.append((info.header_offset, end, info.filename))
    ranges.sort()
    for (_, end, name), (begin, _, other) in zip(ranges, ranges[1:]):
        if begin < end:
            raise TorchFileError(path, f"zip entries {name!r} and {other!r} overlap (bytes "
                                       f"from {begin} to {end} belong to both); refusing "
                                       f"to read them twice")


def _read_zip(path, file_size):
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError,
            RuntimeError) as exc:
        raise TorchFileError(path, f"not a readable zip archive (truncated or corrupt "
                                   f"torch checkpoint?): {exc}") from None
    with zf:
        _check_entry_ranges(path, zf.infolist(), file_size)
        entries = {i.filename: i for i in zf.infolist()}
        roots = [n[: -len("data.pkl")] for n in entries
                 if n.endswith("data.pkl") and n.count("/") == 1]
        if len(roots) != 1:
            raise TorchFileError(path, f"a zip file but not a torch checkpoint: expected one "
                                       f"<root>/data.pkl entry, found {len(roots)}")
        root = roots[0]
        byteorder = "<"
        if root + "byteorder" in entries:
            mark = _read_entry(path, zf, entries[root + "byteorder"], file_size)
            if mark not in (b"little", b"big"):
                raise TorchFileError(path, f"byteorder record is {mark[:20]!r}, expected "
                                           f"'little' or 'big'")
            byteorder = "<" if mark == b"little" else ">"
        storages = {}

        def load_storage(storage):
            name = f"{root}data/{storage.key}"
            if name not in entries:
                raise TorchFileError(path, f"storage {storage.key!r} has no entry {name!r} "
                                           f"(truncated or corrupt file?)")
            raw = _read_entry(path, zf, entries[name], file_size)
            nbytes = storage.numel * numpy_dtype(storage.code).itemsize
            if len(raw) != nbytes:
                raise TorchFileError(path, f"storage {storage.key!r}: {storage.numel} elements "
                                           f"of {storage.code} need {nbytes} bytes, its entry "
                                           f"has {len(raw)}")
            return raw

        def persistent_load(pid):
            storage_type, key, numel, _ = _storage_id(path, pid, legacy=False)
            # check the declared size against the entry before anything is read
            info = entries.get(f"{root}data/{key}")
            if info is not None and numel * numpy_dtype(storage_type.dtype).itemsize \
                    != info.file_size:
                raise TorchFileError(path, f"storage {key!r} declares {numel} elements of "
                                           f"{storage_type.dtype} but its entry has "
                                           f"{info.file_size} bytes")
            if key not in storages:
                storages[key] = _Storage(key, storage_type.dtype, numel, load_storage)
            elif storages[key].code != storage_type.dtype:
                raise TorchFileError(path, f"storage {key!r} is read as two dtypes")
            return storages[key]

        pickled = _read_entry(path, zf, entries[root + "data.pkl"], file_size)
        obj, _ = restricted_load(path, pickled, 0, "data.pkl", persistent_load)
        return _Converter(path, byteorder, storages.values())(obj)


# ---------------------------------------------------------------- legacy format

def _read_legacy(path, data):
    magic, pos = restricted_load(path, data, 0, "the magic number")
    if magic != LEGACY_MAGIC:
        raise TorchFileError(path, "not a PyTorch checkpoint (no zip header and no legacy "
                                   "magic number)")
    version, pos = restricted_load(path, data, pos, "the protocol version")
    if version != LEGACY_PROTOCOL:
        raise TorchFileError(path, f"legacy protocol version {short(version)}, expected "
                                   f"{LEGACY_PROTOCOL}")
    sys_info, pos = restricted_load(path, data, pos, "sys_info")
    if not isinstance(sys_info, dict):
        raise TorchFileError(path, f"sys_info is {type(sys_info).__name__}, expected a dict")
    roots, views = {}, {}

    def persistent_load(pid):
        storage_type, key, numel, view = _storage_id(path, pid, legacy=True)
        root = roots.get(key)
        if root is None:
            root = roots[key] = _Storage(key, storage_type.dtype, numel, None)
        elif root.code != storage_type.dtype or root.numel != numel:
            raise TorchFileError(path, f"storage {key!r} is declared twice differently")
        if view is None:
            return root
        if not (isinstance(view, tuple) and len(view) == 3):
            raise TorchFileError(path, f"storage {key!r}: bad view metadata {short(view)}")
        view_key, offset, view_size = view
        _check_int(path, f"view of storage {key!r}: offset", offset)
        _check_int(path, f"view of storage {key!r}: size", view_size)
        if offset + view_size > numel:
            raise TorchFileError(path, f"view {short(view_key)} ({offset}+{view_size}) lies "
                                       f"outside storage {key!r} of {numel} elements")
        if view_key not in views:
            storage = _Storage(view_key, root.code, view_size, None)
            storage.base, storage.start = root, offset
            views[view_key] = storage
        return views[view_key]

    obj, pos = restricted_load(path, data, pos, "the pickled object", persistent_load)
    keys, pos = restricted_load(path, data, pos, "the storage key list")
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)
            and sorted(keys) == sorted(roots)):
        raise TorchFileError(path, f"the storage key list {short(keys)} does not match "
                                   f"the {len(roots)} storages the object uses")
    for key in keys:
        storage = roots[key]
        if pos + 8 > len(data):
            raise TorchFileError(path, f"storage {key!r}: the file ends before its size "
                                       f"(truncated file?)")
        numel = int.from_bytes(data[pos:pos + 8], "little", signed=True)
        pos += 8
        itemsize = numpy_dtype(storage.code).itemsize
        if numel != storage.numel:
            raise TorchFileError(path, f"storage {key!r}: {numel} elements recorded before "
                                       f"the data, {storage.numel} in the pickle (corrupt "
                                       f"file?)")
        nbytes = numel * itemsize
        if pos + nbytes > len(data):
            raise TorchFileError(path, f"storage {key!r}: {nbytes} bytes declared but only "
                                       f"{len(data) - pos} left in the file (truncated file?)")
        storage._data = memoryview(data)[pos:pos + nbytes]
        pos += nbytes
    if pos != len(data):
        raise TorchFileError(path, f"{len(data) - pos} unexpected bytes after the last "
                                   f"storage (corrupt file?)")
    # legacy storage data is always written little-endian
    return _Converter(path, "<", roots.values())(obj)


# ---------------------------------------------------------------- public

def read_checkpoint(path):
    """The object torch.save wrote to path, tensors as numpy arrays (no torch needed).

    Dicts, OrderedDicts, lists, tuples, numbers and strings come back as such.
    Raises TorchFileError (a cconv WeightFileError, a ValueError) naming the
    path for anything unreadable, and UnsafePickleError for a pickle that
    asks for any global outside the tensor-rebuilding allow-list.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(0, os.SEEK_END)
            size = f.tell()
            if head == _ZIP_MAGIC:
                return _read_zip(path, size)
            f.seek(0)
            data = f.read()
    except OSError as exc:
        raise TorchFileError(path, f"cannot read: {exc.strerror or exc}") from None
    if not data:
        raise TorchFileError(path, "the file is empty")
    if data[:1] != b"\x80":
        raise TorchFileError(path, "not a PyTorch checkpoint (neither a zip archive nor a "
                                   "legacy pickle)")
    return _read_legacy(path, data)


def _flatten(obj, prefix, out):
    if isinstance(obj, np.ndarray):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(v, f"{prefix}.{_key(k)}" if prefix else _key(k), out)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _flatten(v, f"{prefix}.{i}" if prefix else str(i), out)
    return out   # numbers, strings (epoch, arch...) are not weights


def _has_arrays(obj):
    return isinstance(obj, dict) and any(isinstance(v, np.ndarray) for v in obj.values())


def find_state_dict(path, obj, key=None):
    """The flat {name: array} state_dict inside a checkpoint object.

    key: where it is ("state_dict", "model.ema"...). Default: obj itself when
    its values are arrays, else the first of WRAPPER_KEYS that holds arrays.
    """
    if key is not None:
        for part in key.split("."):
            if not isinstance(obj, dict) or part not in obj:
                have = list(obj)[:20] if isinstance(obj, dict) else type(obj).__name__
                raise TorchFileError(path, f"key {key!r}: no {part!r} in the checkpoint "
                                           f"(it has {short(have)})")
            obj = obj[part]
    else:
        seen = 0
        while not _has_arrays(obj) and isinstance(obj, dict) and seen < 4:
            inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj, seen = inner, seen + 1
    tensors = _flatten(obj, "", {}) if isinstance(obj, (dict, list, tuple)) else {}
    if isinstance(obj, np.ndarray):
        tensors = {"": obj}
    if not tensors:
        have = list(obj)[:20] if isinstance(obj, dict) else type(obj).__name__
        raise TorchFileError(path, f"no tensors found (the checkpoint holds {short(have)}); pass "
                                   f"key= to say where the state_dict is")
    return tensors


def load_torch(path, key=None):
    """{name: array} of the state_dict in a PyTorch checkpoint file (the weight loader)."""
    return find_state_dict(os.fspath(path), read_checkpoint(path), key)
