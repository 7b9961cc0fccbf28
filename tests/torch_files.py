"""Write PyTorch checkpoint files by hand, without torch: a tiny pickle emitter.

The opcodes are written one by one (protocol 2, as torch.save uses), so the
tests can make exactly the files torch makes (both formats) and also the
files torch never makes: corrupt sizes, huge declared tensors, malicious
globals.
"""
import io
import struct
import zipfile

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

STORAGE_TYPES = {np.dtype("float32"): "FloatStorage", np.dtype("float64"): "DoubleStorage",
                 np.dtype("float16"): "HalfStorage", np.dtype("int64"): "LongStorage",
                 np.dtype("int32"): "IntStorage", np.dtype("uint8"): "ByteStorage",
                 np.dtype("bool"): "BoolStorage"}


class Global:
    def __init__(self, module, name):
        self.module, self.name = module, name


class Reduce:
    """callable(*args) when unpickled: callable is a Global."""

    def __init__(self, function, args):
        self.function, self.args = function, tuple(args)


class OrderedDict_:
    """collections.OrderedDict(), then SETITEMS (what torch's state_dict pickles to)."""

    def __init__(self, items):
        self.items = list(items)


class Raw:
    """Opcodes written as they are."""

    def __init__(self, data):
        self.data = data


class Storage:
    """A storage: its key, its elements (1-D) and the torch storage type name."""

    def __init__(self, key, values, type_name=None):
        self.key, self.values = str(key), np.ascontiguousarray(values).reshape(-1)
        self.type_name = type_name or STORAGE_TYPES[self.values.dtype]
        self.numel = self.values.size


class Tensor:
    """A tensor: a view (offset, size, stride in elements) of a Storage."""

    def __init__(self, storage, offset=0, size=None, stride=None):
        size = (storage.numel,) if size is None else tuple(size)
        if stride is None:   # C-contiguous
            stride, step = [], 1
            for d in reversed(size):
                stride.insert(0, step)
                step *= d
        self.storage, self.offset, self.size, self.stride = storage, offset, size, tuple(stride)


def _emit(obj, out, legacy):
    if obj is None:
        out.append(b"N")
    elif obj is True or obj is False:
        out.append(b"\x88" if obj else b"\x89")
    elif isinstance(obj, int):
        if 0 <= obj < 256:
            out.append(b"K" + bytes([obj]))
        elif -2**31 <= obj < 2**31:
            out.append(b"J" + struct.pack("<i", obj))
        else:
            n = (obj.bit_length() + 8) // 8
            out.append(b"\x8a" + bytes([n]) + obj.to_bytes(n, "little", signed=True))
    elif isinstance(obj, float):
        out.append(b"G" + struct.pack(">d", obj))
    elif isinstance(obj, str):
        data = obj.encode()
        out.append(b"X" + struct.pack("<I", len(data)) + data)
    elif isinstance(obj, tuple):
        if not obj:
            out.append(b")")
            return
        out.append(b"(")
        for item in obj:
            _emit(item, out, legacy)
        out.append(b"t")
    elif isinstance(obj, list):
        out.append(b"]")
        if obj:
            out.append(b"(")
            for item in obj:
                _emit(item, out, legacy)
            out.append(b"e")
    elif isinstance(obj, dict):
        out.append(b"}")
        if obj:
            out.append(b"(")
            for k, v in obj.items():
                _emit(k, out, legacy)
                _emit(v, out, legacy)
            out.append(b"u")
    elif isinstance(obj, OrderedDict_):
        _emit(Reduce(Global("collections", "OrderedDict"), ()), out, legacy)
        if obj.items:
            out.append(b"(")
            for k, v in obj.items:
                _emit(k, out, legacy)
                _emit(v, out, legacy)
            out.append(b"u")
    elif isinstance(obj, Global):
        out.append(f"c{obj.module}\n{obj.name}\n".encode())
    elif isinstance(obj, Reduce):
        _emit(obj.function, out, legacy)
        _emit(obj.args, out, legacy)
        out.append(b"R")
    elif isinstance(obj, Storage):
        pid = ("storage", Global("torch", obj.type_name), obj.key, "cpu", obj.numel)
        _emit(pid + (None,) if legacy else pid, out, legacy)
        out.append(b"Q")
    elif isinstance(obj, Tensor):
        _emit(Reduce(Global("torch._utils", "_rebuild_tensor_v2"),
                     (obj.storage, obj.offset, obj.size, obj.stride, False, OrderedDict_([]))),
              out, legacy)
    elif isinstance(obj, Raw):
        out.append(obj.data)
    else:
        raise TypeError(f"cannot emit {type(obj).__name__}")


def dumps(obj, legacy=False):
    """Protocol-2 pickle bytes of obj (Tensors refer to storages by persistent id)."""
    out = [b"\x80\x02"]
    _emit(obj, out, legacy)
    out.append(b".")
    return b"".join(out)


def storages_of(obj, found=None):
    """{key: Storage} used by the tensors in obj."""
    found = {} if found is None else found
    if isinstance(obj, Tensor):
        found[obj.storage.key] = obj.storage
    elif isinstance(obj, Storage):
        found[obj.key] = obj
    elif isinstance(obj, dict):
        for v in obj.values():
            storages_of(v, found)
    elif isinstance(obj, OrderedDict_):
        for _, v in obj.items:
            storages_of(v, found)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            storages_of(v, found)
    elif isinstance(obj, Reduce):
        storages_of(obj.args, found)
    return found


def zip_bytes(obj, root="archive", byteorder="little", pickled=None, storage_bytes=None,
              compress=False):
    """A zip-format checkpoint (torch >= 1.6) of obj, as bytes.

    pickled / storage_bytes {key: bytes}: replace what would be written (for
    corrupt files).
    """
    buffer = io.BytesIO()
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buffer, "w", compression=mode) as zf:
        zf.writestr(f"{root}/data.pkl", dumps(obj) if pickled is None else pickled)
        if byteorder is not None:
            zf.writestr(f"{root}/byteorder", byteorder)
        for key, storage in storages_of(obj).items():
            raw = storage.values.astype(storage.values.dtype.newbyteorder(
                "<" if byteorder in (None, "little") else ">")).tobytes()
            if storage_bytes and key in storage_bytes:
                raw = storage_bytes[key]
            zf.writestr(f"{root}/data/{key}", raw)
        zf.writestr(f"{root}/version", "3\n")
    return buffer.getvalue()


def legacy_bytes(obj, pickled=None):
    """A legacy-format checkpoint (_use_new_zipfile_serialization=False) of obj."""
    storages = storages_of(obj)
    sys_info = {"protocol_version": 1001, "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 8}}
    parts = [dumps(LEGACY_MAGIC), dumps(1001), dumps(sys_info),
             dumps(obj, legacy=True) if pickled is None else pickled,
             dumps(sorted(storages))]
    for key in sorted(storages):
        values = storages[key].values
        parts.append(struct.pack("<q", values.size) + values.astype(
            values.dtype.newbyteorder("<")).tobytes())
    return b"".join(parts)


def state_dict_obj(arrays):
    """OrderedDict of Tensors, one storage per array, like model.state_dict()."""
    return OrderedDict_((name, Tensor(Storage(i, a), 0, np.shape(a)))
                        for i, (name, a) in enumerate(arrays.items()))


def write(path, obj, fmt, **kwargs):
    data = zip_bytes(obj, **kwargs) if fmt == "zip" else legacy_bytes(obj, **kwargs)
    with open(path, "wb") as f:
        f.write(data)
    return path
