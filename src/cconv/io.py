"""Save and load networks: safetensors weights with the graph config in the metadata.

`save(net, path)` writes atomically: a temporary file in the same directory,
fsync, then os.replace, so a crash or an error mid-write leaves any previous
file whole. `load(path)` rebuilds the net from the config and loads its
weights strictly. Files are read by a small validating reader rather than
trusted to a parser: every offset and size in the header is checked against
the file's real size before any array is allocated, and every problem is a
`WeightFileError` (a ValueError) naming the path.
"""
import json
import os
import struct
import tempfile
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "CONFIG_KEY",
    "LoadReport",
    "WeightFileError",
    "WeightsMismatchError",
    "load",
    "load_weights",
    "read_safetensors",
    "save",
]

CONFIG_KEY = "cconv_config"
# A real header is a few KB per hundred tensors; refuse more before reading it.
MAX_HEADER_BYTES = 100 * 2**20

_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"), "U64": np.dtype("<u8"), "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"), "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}


class WeightFileError(ValueError):
    """A file that is not a readable cconv/safetensors weight file."""

    def __init__(self, path, problem):
        super().__init__(f"{path}: {problem}")
        self.path = path


class WeightsMismatchError(ValueError):
    """Weights that do not fit the net (strict load); `report` says which."""

    def __init__(self, report, source):
        super().__init__(f"weights from {source} do not match the net "
                         f"(nothing was loaded):\n{report}")
        self.report = report


@dataclass
class LoadReport:
    loaded: list = field(default_factory=list)
    missing: list = field(default_factory=list)      # in the net, not in the source
    unexpected: list = field(default_factory=list)   # in the source, not in the net
    mismatched: list = field(default_factory=list)   # (name, expected, got) shape/dtype

    @property
    def ok(self):
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self):
        lines = [f"loaded {len(self.loaded)} tensor(s)"]
        if self.missing:
            lines.append(f"missing from the source: {self.missing}")
        if self.unexpected:
            lines.append(f"not in the net: {self.unexpected}")
        for name, expected, got in self.mismatched:
            lines.append(f"{name}: net has {expected}, source has {got}")
        return "\n".join(lines)


# ---------------------------------------------------------------- writing

def _write_all(f, data):
    f.write(data)


def _default_file_mode():
    """0o666 minus the process umask: what open() would have given the file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _atomic_write(path, data):
    """Write bytes to path so that readers see the old file or the new one, never half."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=directory)
    try:
        # mkstemp creates the file private (0600); the saved model should get
        # the permissions a plain open() would give it
        os.chmod(tmp, _default_file_mode())
        with os.fdopen(fd, "wb") as f:
            _write_all(f, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable; not every platform can open a directory
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def save(net, path, metadata=None):
    """Write net's parameters and config to path (safetensors), atomically.

    metadata: extra {str: str} entries stored in the file's header.
    """
    from safetensors.numpy import save as st_save

    if not getattr(net, "built", True):
        raise ValueError("save: build the net first (net.build(input_shape)), so that "
                         "its config records the input shapes and it has weights")
    tensors = {name: np.ascontiguousarray(a) for name, a in net.named_parameters()}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta[CONFIG_KEY] = json.dumps(net.get_config(), separators=(",", ":"))
    meta["format"] = "np"
    _atomic_write(path, st_save(tensors, metadata=meta))


# ---------------------------------------------------------------- reading

def _parse_header(path, header_bytes, data_len):
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightFileError(path, f"the safetensors header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise WeightFileError(path, "the safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise WeightFileError(path, "__metadata__ must map strings to strings")
    entries = {}
    for name, info in header.items():
        if not isinstance(info, dict):
            raise WeightFileError(path, f"tensor {name!r}: entry is not an object")
        dtype = _DTYPES.get(info.get("dtype"))
        if dtype is None:
            raise WeightFileError(path, f"tensor {name!r}: unsupported dtype "
                                        f"{info.get('dtype')!r}")
        shape, offsets = info.get("shape"), info.get("data_offsets")
        if not isinstance(shape, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise WeightFileError(path, f"tensor {name!r}: bad shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and
                all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise WeightFileError(path, f"tensor {name!r}: bad data_offsets {offsets!r}")
        begin, end = offsets
        nbytes = dtype.itemsize * int(np.prod(shape, dtype=object))
        if not 0 <= begin <= end <= data_len:
            raise WeightFileError(path, f"tensor {name!r}: data_offsets {offsets} outside "
                                        f"the {data_len} data bytes (truncated file?)")
        if end - begin != nbytes:
            raise WeightFileError(path, f"tensor {name!r}: shape {shape} in "
                                        f"{info['dtype']} needs {nbytes} bytes, the offsets "
                                        f"give {end - begin}")
        entries[name] = (dtype, tuple(shape), begin, end)
    return entries, metadata


def read_safetensors(path):
    """({name: array}, metadata) from a safetensors file, every size checked first."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            if size < 8:
                raise WeightFileError(path, f"too short ({size} bytes) to be a safetensors "
                                            f"file")
            (header_len,) = struct.unpack("<Q", f.read(8))
            if header_len > MAX_HEADER_BYTES or header_len > size - 8:
                raise WeightFileError(path, f"header declares {header_len} bytes but the "
                                            f"file has {size - 8} after the length field: "
                                            f"not a safetensors file, or truncated")
            header_bytes = f.read(header_len)
            entries, metadata = _parse_header(path, header_bytes, size - 8 - header_len)
            data = f.read()
    except OSError as exc:
        raise WeightFileError(path, f"cannot read: {exc.strerror or exc}") from None
    if len(data) != size - 8 - header_len:
        raise WeightFileError(path, "the file changed while it was read")
    tensors = {}
    for name, (dtype, shape, begin, end) in entries.items():
        arr = np.frombuffer(data, dtype=dtype, count=(end - begin) // dtype.itemsize,
                            offset=begin)
        tensors[name] = arr.reshape(shape)
    return tensors, metadata


def load(path):
    """The net saved at path: built from its config, weights loaded strictly."""
    from .graph import Graph

    tensors, metadata = read_safetensors(path)
    if CONFIG_KEY not in metadata:
        raise WeightFileError(path, f"no network config in the metadata (key "
                                    f"{CONFIG_KEY!r}): a plain weight file; build the "
                                    f"net and use net.load_weights(path)")
    try:
        config = json.loads(metadata[CONFIG_KEY])
        net = Graph.from_config(config)
    except (ValueError, LookupError, TypeError) as exc:  # JSON, graph, registry errors
        raise WeightFileError(path, f"the stored network config is unusable: {exc}") from exc
    if not net.built:
        raise WeightFileError(path, "the stored config has no input shapes: cannot "
                                    "build the net")
    load_weights(net, tensors, strict=True, label=path)
    return net


def load_weights(net, source, strict=True, label=None):
    """Copy weights into net's parameter arrays (in place); returns a LoadReport.

    source: a safetensors path or a {name: array} dict. strict (default):
    any missing, unexpected or mismatched (shape or dtype) tensor raises
    WeightsMismatchError and nothing is changed. Not strict: the matching
    tensors are loaded, the rest only reported.
    """
    if isinstance(source, dict):
        tensors, label = source, label or "the given dict"
    else:
        path = os.fspath(source)
        tensors, _ = read_safetensors(path)
        label = label or path
    report = LoadReport()
    params = dict(net.named_parameters())
    for name, target in params.items():
        if name not in tensors:
            report.missing.append(name)
            continue
        value = np.asarray(tensors[name])
        if value.shape != target.shape or value.dtype != target.dtype:
            report.mismatched.append((name, f"{target.shape} {target.dtype}",
                                      f"{value.shape} {value.dtype}"))
        else:
            report.loaded.append(name)
    report.unexpected = [n for n in tensors if n not in params]
    if strict and not report.ok:
        raise WeightsMismatchError(report, label)
    for name in report.loaded:
        np.copyto(params[name], tensors[name])
    return report
