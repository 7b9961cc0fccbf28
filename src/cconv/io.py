"""Save and load networks: safetensors weights with the graph config in the metadata.

`save(net, path)` writes atomically: a temporary file in the same directory,
fsync, then os.replace, so a crash or an error mid-write leaves any previous
file whole. `load(path)` rebuilds the net from the config and loads its
weights strictly. Files are read by a small validating reader rather than
trusted to a parser: every offset and size in the header is checked against
the file's real size before any array is allocated, and every problem is a
`WeightFileError` (a ValueError) naming the path.
"""
import errno
import json
import os
import re
import struct
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from . import _json_shape

__all__ = [
    "CONFIG_KEY",
    "LoadReport",
    "WeightFileError",
    "WeightsMismatchError",
    "atomic_write",
    "export_onnx",
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
    "BF16": np.dtype("<u2"),   # raw 16-bit words, widened to float32 after reading
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
    """What load_weights did (or, in a dry run, would do).

    Names in loaded/missing/mismatched/converted are the net's; in
    unexpected/skipped the source's (renamed: source -> net name).
    """

    loaded: list = field(default_factory=list)
    missing: list = field(default_factory=list)      # in the net, not in the source
    unexpected: list = field(default_factory=list)   # in the source, not in the net
    mismatched: list = field(default_factory=list)   # (name, expected, got) shape/dtype
    skipped: list = field(default_factory=list)      # dropped on purpose by the mapping
    renamed: dict = field(default_factory=dict)      # source name -> net name
    converted: list = field(default_factory=list)    # (name, "HWIO->OIHW" / "float64->float32")
    hints: set = field(default_factory=set)
    dry_run: bool = False

    @property
    def ok(self):
        return not (self.missing or self.unexpected or self.mismatched)

    def as_dict(self):
        """JSON-ready form (for `cconv convert --json`)."""
        return {"ok": self.ok, "dry_run": self.dry_run, "loaded": list(self.loaded),
                "missing": list(self.missing), "unexpected": list(self.unexpected),
                "mismatched": [list(m) for m in self.mismatched],
                "skipped": list(self.skipped), "renamed": dict(self.renamed),
                "converted": [list(c) for c in self.converted], "hints": sorted(self.hints)}

    def __str__(self):
        verb = "would load" if self.dry_run else "loaded"
        lines = [f"{verb} {len(self.loaded)} tensor(s)"]
        if self.renamed:
            lines.append(f"renamed {len(self.renamed)} source name(s)")
        if self.converted:
            lines.append("converted: " + ", ".join(f"{n} ({how})" for n, how in self.converted))
        if self.skipped:
            lines.append(f"skipped on purpose (mapping): {self.skipped}")
        if self.missing:
            lines.append(f"missing from the source: {self.missing}")
        if self.unexpected:
            lines.append("not in the net: " + str(
                [f"{n} (as {self.renamed[n]})" if n in self.renamed else n
                 for n in self.unexpected]))
        for name, expected, got in self.mismatched:
            lines.append(f"{name}: net has {expected}, source has {got}")
        lines += [f"hint: {h}" for h in sorted(self.hints)]
        return "\n".join(lines)


# ---------------------------------------------------------------- writing

def _write_all(f, data):
    f.write(data)


def _default_file_mode():
    """0o666 minus the process umask: what open() would have given the file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_TEMP_TAG = ".cconv-tmp-"   # temp files: .<name>.cconv-tmp-<pid>-<random>


def _pid_alive(pid):
    """Whether process pid exists (POSIX); unknown elsewhere, so assumed alive."""
    if os.name != "posix":
        return True    # os.kill(pid, 0) is not a probe on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True     # another user's process, or a pid we cannot ask about
    return True


def _remove_stale_temps(directory, name):
    """Delete temp files of saves to `name` whose writer died (SIGKILL, power loss)."""
    pattern = re.compile(re.escape("." + name + _TEMP_TAG) + r"(\d{1,10})-[A-Za-z0-9_]+")
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if not match:
            continue
        pid = int(match.group(1))
        # our own pid may be another thread saving to the same path right now
        if pid == os.getpid() or _pid_alive(pid):
            continue
        try:
            os.unlink(entry.path)
        except OSError:
            pass


def _atomic_write(path, data):
    """Write bytes to path so that readers see the old file or the new one, never half.

    The temp file is named .<name>.cconv-tmp-<pid>-<random>; ones left by a
    killed writer (pid no longer alive) are removed here, before writing.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):   # else mkstemp's error names the temp file
        raise FileNotFoundError(errno.ENOENT, f"cannot write: the folder {directory!r} "
                                              f"does not exist", path)
    name = os.path.basename(path)
    _remove_stale_temps(directory, name)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}{_TEMP_TAG}{os.getpid()}-", dir=directory)
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


#: public name for writers outside this module (the cconv-onnx exporter)
atomic_write = _atomic_write

#: what export_onnx tells a user who lacks the exporter plugin
ONNX_PLUGIN_INSTALL = "pip install ./plugins/cconv-onnx"


def export_onnx(net, path, opset=17, dynamic_axes=True, **options):
    """Write a built net to path as an ONNX model (atomically), through the cconv-onnx plugin.

    dynamic_axes: True (the batch axis and the spatial axes the net leaves
    free are symbolic), "batch" (only the batch axis) or False (every axis
    fixed; options: batch_size=1). Returns the onnx.ModelProto. Raises
    ImportError with the install line when the plugin (or onnx) is missing,
    and cconv_onnx.OnnxExportError (a ValueError) listing every node that
    cannot be exported, before anything is written. See docs/onnx.md.
    """
    try:
        from cconv_onnx.exporter import export_onnx as run
    except ImportError as exc:
        if exc.name == "onnx" or (exc.name or "").startswith("onnx."):
            raise ImportError(f"cconv.export_onnx: the cconv-onnx plugin needs the onnx "
                              f"package: pip install onnx ({exc})") from exc
        raise ImportError(f"cconv.export_onnx needs the cconv-onnx plugin, which is not "
                          f"installed: {ONNX_PLUGIN_INSTALL} (from a cconv checkout; it "
                          f"installs onnx too)") from exc
    return run(net, path, opset=opset, dynamic_axes=dynamic_axes, **options)


def save(net, path, metadata=None, preprocessing=None):
    """Write net's parameters and config to path (safetensors), atomically.

    metadata: extra {str: str} entries stored in the file's header.
    preprocessing: a cconv.preprocessing.Preprocessing (or its dict) recording
    how raw inputs are scaled for this net; `cconv predict` applies it.
    """
    from safetensors.numpy import save as st_save

    if not getattr(net, "built", True):
        raise ValueError("save: build the net first (net.build(input_shape)), so that "
                         "its config records the input shapes and it has weights")
    tensors = {name: np.ascontiguousarray(a) for name, a in net.named_parameters()}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta[CONFIG_KEY] = json.dumps(net.get_config(), separators=(",", ":"))
    if preprocessing is not None:
        from .preprocessing import METADATA_KEY, Preprocessing

        if isinstance(preprocessing, dict):
            preprocessing = Preprocessing(**preprocessing)
        meta[METADATA_KEY] = json.dumps(preprocessing.to_dict())
    meta["format"] = "np"
    _atomic_write(path, st_save(tensors, metadata=meta))


# ---------------------------------------------------------------- reading

def _parse_header(path, header_bytes, data_len):
    try:
        members = _json_shape.check(header_bytes)   # before json: no recursion, no blow-up
    except _json_shape.HeaderShapeError as exc:
        raise WeightFileError(path, str(exc)) from None
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:   # ValueError: JSON, int digits
        raise WeightFileError(path, f"the safetensors header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise WeightFileError(path, "the safetensors header is not a JSON object")
    # json keeps the last of duplicate keys: fewer members parsed than colons written
    parsed = len(header) + sum(len(v) for v in header.values() if isinstance(v, dict))
    if parsed != members:
        raise WeightFileError(path, f"the safetensors header is ambiguous: {members - parsed} "
                                    f"key(s) appear twice in one object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise WeightFileError(path, "__metadata__ must map strings to strings")
    entries = {}
    for name, info in header.items():
        if not isinstance(info, dict):
            raise WeightFileError(path, f"tensor {name!r}: entry is not an object")
        # a non-string dtype (a list, found by fuzzing) is not a key: no lookup
        dtype = _DTYPES.get(info.get("dtype")) if isinstance(info.get("dtype"), str) else None
        if dtype is None:
            raise WeightFileError(path, f"tensor {name!r}: unsupported dtype "
                                        f"{info.get('dtype')!r}")
        shape, offsets = info.get("shape"), info.get("data_offsets")
        # every number bounded before the product (a 4000-digit one parses)
        if not isinstance(shape, list) or len(shape) > 64 or not all(
                isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**63
                for d in shape):
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
        entries[name] = (dtype, tuple(shape), begin, end, info["dtype"] == "BF16")
    _check_overlaps(path, entries)
    return entries, metadata


def _check_overlaps(path, entries):
    """Refuse two tensors sharing data bytes (each would be a separate array of them)."""
    spans = sorted((begin, end, name) for name, (_, _, begin, end, _) in entries.items()
                   if end > begin)
    for (_, end, name), (begin, _, other) in zip(spans, spans[1:]):
        if begin < end:
            raise WeightFileError(path, f"tensors {name!r} and {other!r} overlap in the data "
                                        f"(bytes {begin} to {end} belong to both)")


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
    for name, (dtype, shape, begin, end, bf16) in entries.items():
        arr = np.frombuffer(data, dtype=dtype, count=(end - begin) // dtype.itemsize,
                            offset=begin).reshape(shape)
        # bfloat16 is the top half of a float32: no numpy dtype, so widen it
        tensors[name] = (arr.astype("<u4") << 16).view("<f4") if bf16 else arr
    return tensors, metadata


def load(path):
    """The net saved at path: built from its config, weights loaded strictly.

    The config is checked against the tensors in the file (names, shapes,
    dtypes) before any parameter is allocated: a 432-byte file declaring
    Linear(20000, 20000) and holding no tensors is a WeightsMismatchError
    at once, not after 4.6 GB of initialisation.
    """
    from .graph import Graph

    tensors, metadata = read_safetensors(path)
    if CONFIG_KEY not in metadata:
        raise WeightFileError(path, f"no network config in the metadata (key "
                                    f"{CONFIG_KEY!r}): a plain weight file; build the "
                                    f"net and use net.load_weights(path)")
    try:
        config = json.loads(metadata[CONFIG_KEY])
        shell = Graph.from_config(config, build=False)   # layers only, no parameters
        if not isinstance(config, dict) or config.get("input_shapes") is None:
            raise WeightFileError(path, "the stored config has no input shapes: cannot "
                                        "build the net")
        expected = _expected_parameters(shell, config)
    except WeightFileError:
        raise
    except (ValueError, LookupError, TypeError, RecursionError) as exc:  # JSON, graph, registry
        raise WeightFileError(path, f"the stored network config is unusable: {exc}") from exc
    report = _compare_to_file(expected, tensors)
    if not report.ok:
        raise WeightsMismatchError(report, path)
    try:
        net = Graph.from_config(config)
    except (ValueError, LookupError, TypeError) as exc:
        raise WeightFileError(path, f"the stored network config is unusable: {exc}") from exc
    load_weights(net, tensors, strict=True, label=path)
    return net


def _declares_params(layer):
    """Whether layer.param_shapes speaks for layer.build (not inherited past an override)."""
    mro = type(layer).__mro__
    owner = {attr: next(c for c in mro if attr in c.__dict__) for attr in ("param_shapes",
                                                                           "build")}
    return issubclass(owner["param_shapes"], owner["build"])


def _expected_parameters(net, config):
    """{name: (shape, dtype)} of the parameters net.build would create, allocating nothing.

    Layers that declare param_shapes are asked; any other (a plugin layer that
    does not say) is built on its own to see, which only trusted code can make
    expensive.
    """
    dtype = np.dtype(config.get("dtype") or "float32")
    values = net.infer_shapes(config["input_shapes"])
    expected = {}
    for name in net.topological_order():
        node = net.nodes[name]
        in_shapes = [values[s] for s in node.inputs]
        shapes = node.layer.param_shapes(in_shapes) if _declares_params(node.layer) else None
        if shapes is None:
            node.layer.build(in_shapes, rng=np.random.default_rng(0))
            shapes = {p: a.shape for p, a in node.layer.params.items()}
        for p, shape in shapes.items():
            expected[f"{name}.{p}"] = (tuple(int(d) for d in shape), dtype)
    return expected


def _compare_to_file(expected, tensors):
    """A LoadReport of expected {name: (shape, dtype)} against the file's tensors."""
    report = LoadReport()
    for name, (shape, dtype) in expected.items():
        if name not in tensors:
            report.missing.append(name)
            continue
        got = tensors[name]
        if tuple(got.shape) != shape or got.dtype != dtype:
            report.mismatched.append((name, f"{shape} {dtype}",
                                      f"{tuple(got.shape)} {got.dtype}"))
    report.unexpected = [name for name in tensors if name not in expected]
    return report


def _read_source(source, label, loader):
    """({name: array}, label) from a dict of arrays or a weight file."""
    if isinstance(source, Mapping):
        return source, label or "the given dict"
    from . import plugins

    try:
        path = os.fspath(source)
    except TypeError:
        raise TypeError(f"load_weights: source must be a path or a dict of arrays, got "
                        f"{type(source).__name__}") from None
    if callable(loader):
        function = loader
    elif loader is not None:
        function = plugins.get_weight_loader(loader)
    else:
        try:
            function = plugins.find_weight_loader(path)
        except plugins.UnknownNameError as exc:
            # no loader claims the suffix: it may still be a safetensors file
            try:
                tensors, _ = read_safetensors(path)
                return tensors, label or path
            except WeightFileError as why:
                raise WeightFileError(path, f"{exc}; and it is not a safetensors file "
                                            f"({why}); {loader_hint(path)}") from None
    tensors = function(path)
    if isinstance(tensors, tuple):   # read_safetensors-style (tensors, metadata)
        tensors = tensors[0]
    if not isinstance(tensors, Mapping):
        raise TypeError(f"weight loader {function!r} returned {type(tensors).__name__}, "
                        f"expected a dict of arrays")
    return tensors, label or path


# suffix -> the plugin that reads it, for the error when none is installed
_PLUGIN_SUFFIXES = {(".pt", ".pth", ".bin", ".ckpt"): "cconv-torch", (".onnx",): "cconv-onnx"}


def loader_hint(path):
    """How to get a loader for path: the plugin's install line, or loader=NAME."""
    lower = str(path).lower()
    for suffixes, plugin in _PLUGIN_SUFFIXES.items():
        if lower.endswith(suffixes):
            return (f"{' / '.join(suffixes)} files need the {plugin} plugin: "
                    f"pip install ./plugins/{plugin} (from a cconv checkout)")
    return "pass loader=NAME (cconv plugins lists the weight loaders)"


def load_weights(net, source, strict=True, label=None, *, mapping=None, layout=None,
                 cast=False, dry_run=False, loader=None):
    """Copy weights into net's parameter arrays (in place); returns a LoadReport.

    source: a {name: array} dict or a weight file; a file is read by the
    weight loader registered for its suffix (.safetensors built in; .pt/.pth/.bin
    with the cconv-torch plugin), or the one named by loader= (a name or a
    function path -> dict).

    mapping: source names -> net names (a prefix to strip, {old: new},
    [(regex, replacement)...], a callable returning a name or None to skip,
    or a cconv.weightmap.NameMap); layout: conversions such as "HWIO->OIHW"
    or {name regex: "IO->OI"} (see cconv.weightmap). cast=False: a dtype
    different from the parameter's is a mismatch; cast=True converts
    integer and floating-point sources to the parameter's dtype on purpose
    (float64 -> float32 rounds; a value that overflows is still a mismatch).

    Everything is renamed, converted and checked before any parameter
    changes. strict (default): any missing, unexpected or mismatched tensor
    raises WeightsMismatchError and nothing is changed. Not strict: the
    matching tensors are loaded, the rest only reported. dry_run: nothing is
    changed and nothing raised; the report says what would happen.
    """
    from .weightmap import plan_load

    tensors, label = _read_source(source, label, loader)
    report = LoadReport(dry_run=bool(dry_run))
    params = dict(net.named_parameters())
    plan = plan_load(params, tensors, report, mapping=mapping, layout=layout, cast=cast)
    if dry_run:
        return report
    if strict and not report.ok:
        raise WeightsMismatchError(report, label)
    for name, value in plan.items():
        np.copyto(params[name], value)
    return report
