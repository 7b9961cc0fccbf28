"""Build the hostile-input corpus: one crafted file per attack on cconv's loaders.

Nothing binary is stored: every file is written here from a few lines, so a
reader sees what each attack is. Each case names the loader it targets, the
documented exception it must raise, and the defect it reproduces (issue 23).

    python tests/hostile_corpus.py OUTDIR          # write the files and manifest.json
    python tests/hostile_corpus.py OUTDIR --small  # smaller variants (fuzzing seeds)

tests/test_hostile_files.py loads each file in a child process under a memory
cap and a timeout; bench/fuzz_loaders.py seeds its mutations with the small
variants.

Targets: "torch" (cconv_torch.load_torch), "safetensors" (cconv.io.read_safetensors),
"load" (cconv.load), "onnx" (cconv_onnx.import_onnx).
"""
import json
import os
import struct
import sys
import zipfile
import zlib
from collections import namedtuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_files as tf

Case = namedtuple("Case", "name target suffix data error why")

SUFFIX = {"torch": ".pt", "safetensors": ".safetensors", "load": ".safetensors",
          "onnx": ".onnx"}


# ---------------------------------------------------------------- PyTorch

def _torch_zip(pickled, storages=()):
    """A zip checkpoint holding data.pkl = pickled and data/<key> = bytes for (key, bytes)."""
    buf = __import__("io").BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", pickled)
        zf.writestr("archive/byteorder", "little")
        for key, raw in storages:
            zf.writestr(f"archive/data/{key}", raw)
        zf.writestr("archive/version", "3\n")
    return buf.getvalue()


def torch_deep_tuple_key(small):
    # {((((...),),),): 1}, 200,000 deep: hashing the key overflowed the C stack (SIGSEGV)
    depth = 20_000 if small else 200_000
    return _torch_zip(b"\x80\x02}" + b")" + b"\x85" * depth + b"K\x01s.")


def torch_legacy_deep_tuple_key(small):
    depth = 20_000 if small else 200_000
    return tf.legacy_bytes({}, pickled=b"\x80\x02}" + b")" + b"\x85" * depth + b"K\x01s.")


def torch_lists_filled_after_memo(small):
    # 41 empty lists memoised, then filled from the top: L[i] = [L[i-1], L[i-1]].
    # A size recorded at memo time says 1; the walk has 2**40 paths.
    ops = [b"\x80\x02"]
    for i in range(41):
        ops.append(b"]q" + bytes([i]) + b"0")
    for i in range(40, 0, -1):
        ops.append(b"h" + bytes([i]) + b"h" + bytes([i - 1]) + b"ah" + bytes([i - 1]) + b"a0")
    ops.append(b"}X\x01\x00\x00\x00wh\x28s.")
    return _torch_zip(b"".join(ops))


def torch_list_contains_itself(small):
    return _torch_zip(b"\x80\x02}X\x01\x00\x00\x00w]q\x00h\x00as.")


def torch_build_on_storage(small):
    # BUILD on the loader's own 16-element storage: numel = 2**30 and _data = a
    # payload from the pickle lift the 4x budget; then K views at offsets 0..K-1
    # are K copies of the payload (8 MB -> 4.8 GB in the issue)
    payload, views = (1 << 18, 4) if small else (1 << 22, 64)
    storage = tf.Storage("0", np.zeros(16, np.float32))
    pid = tf.dumps(storage)[2:-1]   # the persistent-id opcodes, without PROTO and STOP
    state = (b"}(X\x05\x00\x00\x00numelJ\x00\x00\x00\x40X\x05\x00\x00\x00_data"
             b"B" + struct.pack("<I", payload) + bytes(payload) + b"ub")
    size = payload // 4 - views
    rebuild = tf.Global("torch._utils", "_rebuild_tensor_v2")
    tensors = {f"t{k}": tf.Reduce(rebuild, (tf.Raw(pid + state + b"q\x00" if k == 0 else
                                                   b"h\x00"), k, (size,), (1,), False,
                                            tf.OrderedDict_([])))
               for k in range(views)}
    return _torch_zip(tf.dumps(tensors), [("0", storage.values.tobytes())])


def torch_build_on_tensor(small):
    storage = tf.Storage("0", np.zeros(4, np.float32))
    tensor = tf.Tensor(storage, 0, (4,))
    body = tf.dumps({"w": tensor})[:-2]   # up to SETITEMS: the tensor is on top
    pickled = body + b"}(X\x04\x00\x00\x00sizeJ\x00\x00\x00\x01ubu."
    return _torch_zip(pickled, [("0", storage.values.tobytes())])


def torch_newobj(small):
    return _torch_zip(b"\x80\x02ccollections\nOrderedDict\n)\x81.")


def _long4(value_bytes):
    return b"\x8b" + struct.pack("<i", len(value_bytes)) + value_bytes


def torch_huge_int_size(small):
    # tensor sizes given as 2 MB integers: their product, computed before any
    # bound, took minutes of CPU
    n, count = (64 << 10, 3) if small else (2 << 20, 7)
    storage = tf.Storage("0", np.zeros(4, np.float32))
    size = tf.Raw(b"(" + _long4(b"\xff" * (n - 1) + b"\x7f") * count + b"t")
    tensor = tf.Reduce(tf.Global("torch._utils", "_rebuild_tensor_v2"),
                       (storage, 0, size, (1,) * count, False, tf.OrderedDict_([])))
    return _torch_zip(tf.dumps({"w": tensor}), [("0", storage.values.tobytes())])


def torch_size_2pow100(small):
    storage = tf.Storage("0", np.zeros(4, np.float32))
    tensor = tf.Tensor(storage, 0, (2**100,), (1,))
    return _torch_zip(tf.dumps({"w": tensor}), [("0", storage.values.tobytes())])


def _local_header(name, crc, size):
    return struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, size, size,
                       len(name), 0) + name


def torch_overlapping_entries(small):
    # N storage entries whose data ranges overlap: entry k's bytes are the local
    # headers of entries k+1.. and one shared payload, so N entries re-read it
    count, payload = (8, 1 << 16) if small else (32, 2 << 20)
    tail = bytes(payload)
    names = [f"archive/data/{k}".encode() for k in range(count)]
    headers, blobs = [None] * count, [None] * count
    data = tail
    for k in range(count - 1, -1, -1):
        blobs[k] = data
        headers[k] = _local_header(names[k], zlib.crc32(data), len(data))
        data = headers[k] + data
    storages = [tf.Storage(str(k), np.zeros(len(blobs[k]), np.uint8)) for k in range(count)]
    pickled = tf.dumps({f"t{k}": tf.Tensor(s, 0, (s.numel,)) for k, s in enumerate(storages)})
    out, central = bytearray(), bytearray()

    def entry(name, blob, offset, crc):
        central.extend(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, crc,
                                   len(blob), len(blob), len(name), 0, 0, 0, 0, 0, offset)
                       + name)

    for name, blob in ((b"archive/data.pkl", pickled), (b"archive/byteorder", b"little")):
        offset = len(out)
        out += _local_header(name, zlib.crc32(blob), len(blob)) + blob
        entry(name, blob, offset, zlib.crc32(blob))
    start = len(out)
    out += data   # headers[0] + blobs[0], which holds every later header and the payload
    offset = start
    for k in range(count):
        entry(names[k], blobs[k], offset, zlib.crc32(blobs[k]))
        offset += len(headers[k])
    n = count + 2
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n, n, len(central), len(out), 0)
    return bytes(out + central + eocd)


# ---------------------------------------------------------------- safetensors

def _st(header_bytes, data=b""):
    return struct.pack("<Q", len(header_bytes)) + header_bytes + data


def st_deep_list(small):
    depth = 10_000 if small else 100_000
    return _st(b'{"a":' + b"[" * depth + b"]" * depth + b"}")


def st_deep_object(small):
    depth = 10_000 if small else 100_000
    return _st(b'{"a":' + b'{"b":' * depth + b"1" + b"}" * depth + b"}")


def st_list_of_lists(small):
    # 40 MB of [[],[],...]: json made 13 million lists (1.15 GB)
    n = (1 << 18) if small else (40 << 20) // 3
    return _st(b"[" + b"[]," * n + b"[]]")


def st_object_of_lists(small):
    n = (1 << 18) if small else (8 << 20) // 3
    return _st(b'{"a":[' + b"[]," * n + b"[]]}")


def st_many_metadata_entries(small):
    # valid structure, many tiny strings: parses, then there is no config to load
    n = (1 << 14) if small else (8 << 20) // 16
    items = b",".join(b'"k%07d":"v"' % i for i in range(n))
    return _st(b'{"__metadata__":{' + items + b"}}")


def st_overlapping_offsets(small):
    header = {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
              "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}
    return _st(json.dumps(header).encode(), bytes(16))


def st_duplicate_keys(small):
    entry = b'{"dtype":"F32","shape":[1],"data_offsets":[0,4]}'
    return _st(b'{"a":' + entry + b',"a":' + entry + b"}", bytes(4))


def st_huge_number(small):
    return _st(b'{"a":{"dtype":"F32","shape":[' + b"9" * 5000 + b'],"data_offsets":[0,4]}}',
               bytes(4))


def _saved_config_file(config, tensors=None):
    meta = {"cconv_config": json.dumps(config, separators=(",", ":")), "format": "np"}
    header, data, offset = {"__metadata__": meta}, b"", 0
    for name, array in (tensors or {}).items():
        raw = np.ascontiguousarray(array, np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(np.shape(array)),
                        "data_offsets": [offset, offset + len(raw)]}
        data += raw
        offset += len(raw)
    return _st(json.dumps(header, separators=(",", ":")).encode(), data)


def _linear_config(n):
    from cconv import nn
    config = nn.Sequential(nn.Linear(2, 2)).build((2,), seed=0).get_config()
    text = json.dumps(config).replace('"in_features": 2', f'"in_features": {n}') \
        .replace('"out_features": 2', f'"out_features": {n}').replace("[2]", f"[{n}]")
    return json.loads(text)


def load_config_without_tensors(small):
    # 432 bytes declaring Linear(20000, 20000): the net was built (4.6 GB) before the check
    return _saved_config_file(_linear_config(2000 if small else 20000))


def load_config_wrong_shapes(small):
    n = 2000 if small else 20000
    return _saved_config_file(_linear_config(n), {"0.weight": np.zeros((2, 2)),
                                                  "0.bias": np.zeros(2)})


def load_config_deep_json(small):
    depth = 10_000 if small else 100_000
    meta = {"cconv_config": "[" * depth + "]" * depth}
    return _st(json.dumps({"__metadata__": meta}).encode())


# ---------------------------------------------------------------- ONNX

def _onnx_model(nodes, inits=(), opset=13, x_shape=(1, 1, 9, 9), y_shape=(1, 1, 9, 9)):
    import onnx
    from onnx import helper, numpy_helper
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, y_shape)],
        [numpy_helper.from_array(np.asarray(a), name) for name, a in inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def onnx_range_mul(small, n=40000):
    # Range(0, 40000) unsqueezed both ways, then Mul: 1.6e9 elements folded (6 GB)
    from onnx import helper
    n = 4000 if small else n
    nodes = [helper.make_node("Range", ["s", "l", "d"], ["r"]),
             helper.make_node("Unsqueeze", ["r", "a0"], ["r0"]),
             helper.make_node("Unsqueeze", ["r", "a1"], ["r1"]),
             helper.make_node("Mul", ["r0", "r1"], ["m"]),
             helper.make_node("Relu", ["x"], ["y"])]
    inits = [("s", np.array(0, np.int64)), ("l", np.array(n, np.int64)),
             ("d", np.array(1, np.int64)), ("a0", np.array([0], np.int64)),
             ("a1", np.array([1], np.int64))]
    return _onnx_model(nodes, inits).SerializeToString()


def onnx_range_mul_fits(small):
    # the same with 12000: 1.15 GB, within the address-space cap, so that only
    # the budget (not a MemoryError) can refuse it
    return onnx_range_mul(small, 12000)


def onnx_constant_of_shape(small):
    from onnx import helper
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["c"]),
             helper.make_node("Relu", ["x"], ["y"])]
    return _onnx_model(nodes, [("shape", np.array([40000, 40000], np.int64))]) \
        .SerializeToString()


def onnx_non_utf8_attribute(small):
    from onnx import helper
    node = helper.make_node("Conv", ["x", "w"], ["y"], auto_pad=b"\xff\xfeSAME")
    return _onnx_model([node], [("w", np.ones((1, 1, 1, 1), np.float32))]).SerializeToString()


def onnx_huge_strides(small):
    # a 564-byte Conv with strides 2**24: imported, then one inference took 9 s and 4.7 GB
    from onnx import helper
    node = helper.make_node("Conv", ["x", "w"], ["y"], strides=[2**24, 2**24])
    return _onnx_model([node], [("w", np.ones((1, 1, 1, 1), np.float32))],
                       y_shape=(1, 1, 1, 1)).SerializeToString()


# ---------------------------------------------------------------- the table

_TORCH, _WEIGHTS, _MISMATCH, _ONNX = ("TorchFileError", "WeightFileError",
                                     "WeightsMismatchError", "OnnxImportError")

CASES = [
    # (builder, target, error, why)
    (torch_deep_tuple_key, "torch", _TORCH, "issue 23.1: SIGSEGV hashing a 200,000-deep key"),
    (torch_legacy_deep_tuple_key, "torch", _TORCH, "issue 23.1, legacy format"),
    (torch_lists_filled_after_memo, "torch", _TORCH, "issue 23.2: 2**40 paths, a hang"),
    (torch_list_contains_itself, "torch", _TORCH, "a cycle"),
    (torch_build_on_storage, "torch", _TORCH, "issue 23.3: BUILD lifts the byte budget"),
    (torch_build_on_tensor, "torch", _TORCH, "BUILD on a tensor reference"),
    (torch_newobj, "torch", _TORCH, "NEWOBJ makes an arbitrary object"),
    (torch_overlapping_entries, "torch", _TORCH, "issue 23.4: overlapping zip entries"),
    (torch_huge_int_size, "torch", _TORCH, "issue 23.5: a 2 MB integer as a size"),
    (torch_size_2pow100, "torch", _TORCH, "a size of 2**100"),
    (st_deep_list, "safetensors", _WEIGHTS, "issue 23.12: RecursionError"),
    (st_deep_object, "safetensors", _WEIGHTS, "issue 23.12: RecursionError"),
    (st_list_of_lists, "safetensors", _WEIGHTS, "issue 23: 40 MB header peaks at 1.15 GB"),
    (st_object_of_lists, "safetensors", _WEIGHTS, "lists of lists inside the object"),
    (st_many_metadata_entries, "load", _WEIGHTS, "a valid but large header: memory"),
    (st_overlapping_offsets, "safetensors", _WEIGHTS, "issue 23: overlapping data_offsets"),
    (st_duplicate_keys, "safetensors", _WEIGHTS, "issue 23: duplicate keys"),
    (st_huge_number, "safetensors", _WEIGHTS, "a 5000-digit number (plain ValueError)"),
    (load_config_without_tensors, "load", _MISMATCH, "issue 23.7: 4.6 GB before the check"),
    (load_config_wrong_shapes, "load", _MISMATCH, "issue 23.7 with tensors of other shapes"),
    (load_config_deep_json, "load", _WEIGHTS, "a config nested 100,000 deep"),
    (onnx_range_mul, "onnx", _ONNX, "issue 23.6: 6 GB of folding from 262 bytes"),
    (onnx_range_mul_fits, "onnx", _ONNX, "issue 23.6 at 1.15 GB (under the memory cap)"),
    (onnx_constant_of_shape, "onnx", _ONNX, "ConstantOfShape 40000x40000"),
    (onnx_non_utf8_attribute, "onnx", _ONNX, "issue 23.12: UnicodeDecodeError"),
    (onnx_huge_strides, "onnx", _ONNX, "issue 23.8: Conv strides 2**24"),
]


def available_targets():
    """Targets whose loader can be imported here (the plugins from their source if need be)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for plugin in ("cconv-torch", "cconv-onnx"):
        src = os.path.join(root, "plugins", plugin, "src")
        if os.path.isdir(src) and src not in sys.path:
            sys.path.append(src)
    found = {"safetensors", "load"}
    for target, module in (("torch", "cconv_torch"), ("onnx", "cconv_onnx")):
        try:
            __import__(module)
            found.add(target)
        except ImportError:
            pass
    return found


def cases(small=False, targets=None):
    """[Case] of every corpus file (built now, in memory) whose target is in targets."""
    targets = available_targets() if targets is None else set(targets)
    return [Case(build.__name__, target, SUFFIX[target], build(small), error, why)
            for build, target, error, why in CASES if target in targets]


def write(directory, small=False, targets=None):
    """Write the corpus to directory; returns [(Case without data, path)]."""
    os.makedirs(directory, exist_ok=True)
    out = []
    for case in cases(small, targets):
        path = os.path.join(directory, case.name + case.suffix)
        with open(path, "wb") as f:
            f.write(case.data)
        out.append((case._replace(data=len(case.data)), path))
    return out


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir")
    ap.add_argument("--small", action="store_true")
    args = ap.parse_args(argv)
    written = write(args.outdir, args.small)
    manifest = [dict(case._asdict(), path=path) for case, path in written]
    with open(os.path.join(args.outdir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    for case, path in written:
        print(f"{case.data:>10}  {case.error:<22} {path}")


if __name__ == "__main__":
    main()
