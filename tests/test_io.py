"""Save/load: round trips, atomic writes, strict and lenient weight loading, bad files."""
import json
import os
import struct

import numpy as np
import pytest

import cconv
from cconv import io
from cconv.graph import Graph, Sequential
from cconv.io import LoadReport, WeightFileError, WeightsMismatchError
from cconv.nn import BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU

pytest.importorskip("safetensors")


def small_net(seed=0):
    return Sequential(Conv2d(1, 4, 3, padding=1), BatchNorm2d(4), ReLU(), MaxPool2d(2),
                      Flatten(), Linear(4 * 4 * 4, 10)).build((1, 8, 8), seed=seed)


def x_batch():
    return np.random.default_rng(5).standard_normal((3, 1, 8, 8)).astype(np.float32)


def params(net):
    return {k: v.copy() for k, v in net.named_parameters()}


def test_save_load_round_trip_equal_outputs(tmp_path):
    net = small_net()
    net.forward(x_batch(), training=True)       # move BatchNorm's running statistics
    path = tmp_path / "net.safetensors"
    cconv.save(net, path)
    back = cconv.load(path)
    assert back.get_config() == net.get_config()
    np.testing.assert_array_equal(back(x_batch()), net(x_batch()))
    assert os.listdir(tmp_path) == ["net.safetensors"]   # no temp file left


def test_round_trip_graph_float64_and_frozen(tmp_path):
    g = Graph(inputs=["x"])
    g.add("fc", Linear(3, 4))
    g.add("act", ReLU())
    g.build((3,)).astype(np.float64).freeze("fc.bias")
    cconv.save(g, tmp_path / "g.safetensors")
    back = cconv.load(tmp_path / "g.safetensors")
    assert back.dtype == np.float64 and back.frozen() == ["fc.bias"]
    for (n1, a), (n2, b) in zip(g.named_parameters(), back.named_parameters()):
        assert n1 == n2 and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_file_is_plain_safetensors_with_config(tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import load_file

    net = small_net()
    path = str(tmp_path / "n.safetensors")
    cconv.save(net, path, metadata={"note": "hi"})
    tensors = load_file(path)
    assert set(tensors) == {n for n, _ in net.named_parameters()}
    with safe_open(path, "np") as f:
        meta = f.metadata()
    assert meta["note"] == "hi"
    assert json.loads(meta[io.CONFIG_KEY])["class"] == "Sequential"


def test_failed_save_leaves_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "net.safetensors"
    old = small_net(seed=0)
    cconv.save(old, path)
    before = path.read_bytes()

    def half_then_fail(f, data):
        f.write(data[: len(data) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(io, "_write_all", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        cconv.save(small_net(seed=1), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["net.safetensors"]
    monkeypatch.undo()
    np.testing.assert_array_equal(cconv.load(path)(x_batch()), old(x_batch()))


def test_load_weights_strict_report(tmp_path):
    src = small_net(seed=1)
    dst = small_net(seed=2)
    path = tmp_path / "w.safetensors"
    cconv.save(src, path)
    report = dst.load_weights(path)
    assert isinstance(report, LoadReport) and report.ok
    assert report.loaded == [n for n, _ in dst.named_parameters()]
    for (_, a), (_, b) in zip(src.named_parameters(), dst.named_parameters()):
        np.testing.assert_array_equal(a, b)


def test_strict_load_raises_and_changes_nothing():
    net = small_net(seed=0)
    before = params(net)
    weights = params(small_net(seed=1))
    weights["5_linear.weight"] = np.zeros((10, 3), np.float32)     # wrong shape
    weights["0_conv2d.bias"] = weights["0_conv2d.bias"].astype(np.float64)  # wrong dtype
    del weights["1_batchnorm2d.weight"]                            # missing
    weights["extra.weight"] = np.zeros(2, np.float32)              # unexpected
    with pytest.raises(WeightsMismatchError) as info:
        net.load_weights(weights)
    report = info.value.report
    assert report.missing == ["1_batchnorm2d.weight"]
    assert report.unexpected == ["extra.weight"]
    assert {m[0] for m in report.mismatched} == {"5_linear.weight", "0_conv2d.bias"}
    assert "5_linear.weight" in str(info.value) and "float64" in str(info.value)
    for name, value in net.named_parameters():
        np.testing.assert_array_equal(value, before[name])


def test_non_strict_load_takes_what_fits():
    net = small_net(seed=0)
    source = small_net(seed=1)
    weights = params(source)
    weights["5_linear.weight"] = np.zeros((10, 3), np.float32)
    del weights["0_conv2d.bias"]
    report = net.load_weights(weights, strict=False)
    assert report.missing == ["0_conv2d.bias"]
    assert [m[0] for m in report.mismatched] == ["5_linear.weight"]
    got = params(net)
    np.testing.assert_array_equal(got["0_conv2d.weight"], weights["0_conv2d.weight"])
    assert not np.array_equal(got["5_linear.weight"], source["5_linear"].params["weight"])


def test_loaded_arrays_are_the_live_ones():
    net = small_net()
    live = net["0_conv2d"].params["weight"]
    net.load_weights(params(small_net(seed=7)))
    assert net["0_conv2d"].params["weight"] is live      # copied in place
    assert live.flags.writeable


# ---------------------------------------------------------------- bad files

def write_raw(path, header, data=b"", header_len=None):
    blob = json.dumps(header).encode()
    n = len(blob) if header_len is None else header_len
    path.write_bytes(struct.pack("<Q", n) + blob + data)
    return path


def good_file(tmp_path):
    path = tmp_path / "good.safetensors"
    cconv.save(small_net(), path)
    return path


@pytest.mark.parametrize("case", ["empty", "short", "text", "absurd_header", "truncated",
                                  "bad_json", "not_object", "bad_dtype", "list_dtype",
                                  "bad_shape",
                                  "offsets_outside", "size_mismatch", "bad_metadata",
                                  "directory", "missing"])
def test_bad_files_raise_clear_errors(tmp_path, case):
    path = tmp_path / f"{case}.safetensors"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "short":
        path.write_bytes(b"\x01\x02")
    elif case == "text":
        path.write_text("this is not a weight file at all, just some text\n" * 3)
    elif case == "absurd_header":
        path.write_bytes(struct.pack("<Q", 2**62) + b"{}")
    elif case == "truncated":
        data = good_file(tmp_path).read_bytes()
        path.write_bytes(data[: len(data) - 100])
    elif case == "bad_json":
        path.write_bytes(struct.pack("<Q", 5) + b"{nope")
    elif case == "not_object":
        write_raw(path, [1, 2])
    elif case == "bad_dtype":
        write_raw(path, {"w": {"dtype": "Q99", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4)
    elif case == "list_dtype":      # found by fuzzing: was a TypeError (unhashable)
        write_raw(path, {"w": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}},
                  b"\0" * 4)
    elif case == "bad_shape":
        write_raw(path, {"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4)
    elif case == "offsets_outside":
        write_raw(path, {"w": {"dtype": "F32", "shape": [2**40], "data_offsets": [0, 2**42]}},
                  b"\0" * 8)
    elif case == "size_mismatch":
        write_raw(path, {"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8)
    elif case == "bad_metadata":
        write_raw(path, {"__metadata__": {"a": 1}})
    elif case == "directory":
        path.mkdir()
    # "missing": never created
    with pytest.raises(WeightFileError) as info:
        cconv.load(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_plain_weight_file_without_config(tmp_path):
    from safetensors.numpy import save_file

    path = str(tmp_path / "plain.safetensors")
    save_file({"fc.weight": np.zeros((2, 2), np.float32)}, path)
    with pytest.raises(WeightFileError, match="no network config"):
        cconv.load(path)
    net = Graph()
    net.add("fc", Linear(2, 2, bias=False))
    net.build((2,))
    assert net.load_weights(path).loaded == ["fc.weight"]


def test_unusable_config_in_metadata(tmp_path):
    from safetensors.numpy import save_file

    path = str(tmp_path / "bad_config.safetensors")
    save_file({}, path, metadata={io.CONFIG_KEY: "{not json"})
    with pytest.raises(WeightFileError, match="config"):
        cconv.load(path)
    config = small_net().get_config()
    config["nodes"][0]["type"] = "Nope"
    save_file({}, path, metadata={io.CONFIG_KEY: json.dumps(config)})
    with pytest.raises(WeightFileError, match="Nope"):
        cconv.load(path)


def test_wrong_shapes_in_file_vs_config(tmp_path):
    path = tmp_path / "n.safetensors"
    net = small_net()
    cconv.save(net, path)
    other = Sequential(Linear(3, 3)).build((3,))
    with pytest.raises(WeightsMismatchError, match=str(path).replace("\\", "\\\\")):
        other.load_weights(path)


def test_save_refuses_unbuilt_net(tmp_path):
    with pytest.raises(ValueError, match="build the net"):
        cconv.save(Sequential(Linear(2, 2)), tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_saved_file_gets_umask_permissions(tmp_path):
    import stat

    net = Sequential(Linear(3, 2)).build((3,), seed=0)
    old = os.umask(0o022)
    try:
        cconv.save(net, tmp_path / "m.safetensors")
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(tmp_path / "m.safetensors").st_mode)
    assert mode == 0o644


def test_free_input_dims_round_trip_and_old_files_load_fixed(tmp_path):
    from safetensors.numpy import save as st_save

    net = Sequential(Conv2d(1, 2, 3, padding=1), ReLU(), MaxPool2d(2)).build((1, 8, 8))
    path = tmp_path / "conv.safetensors"
    io.save(net, path)
    loaded = io.load(path)
    assert loaded.input_spec == {"x": (None, 1, None, None)}
    x = np.random.default_rng(0).standard_normal((2, 1, 14, 10)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), net(x))
    # a file written before input_spec existed: loads, fixed at the built size as then
    config = net.get_config()
    del config["input_spec"]
    old = tmp_path / "old.safetensors"
    old.write_bytes(st_save({n: np.ascontiguousarray(a) for n, a in net.named_parameters()},
                            metadata={io.CONFIG_KEY: json.dumps(config), "format": "np"}))
    was = io.load(old)
    assert was.input_spec == {"x": (None, 1, 8, 8)}
    np.testing.assert_array_equal(was(x[:, :, :8, :8].copy()), net(x[:, :, :8, :8].copy()))
    with pytest.raises(ValueError, match="input 'x' has shape"):
        was(x)


def _saved_with(tmp_path, net, tensors):
    """A file with net's config and these tensors instead of its own."""
    from safetensors.numpy import save as st_save
    path = tmp_path / "edited.safetensors"
    meta = {io.CONFIG_KEY: json.dumps(net.get_config()), "format": "np"}
    path.write_bytes(st_save(tensors, metadata=meta))
    return path


def test_load_checks_config_against_the_file_before_building(tmp_path, monkeypatch):
    # issue 23: a config declaring big layers over a file without their tensors
    # must fail before any parameter is allocated
    net = small_net()
    tensors = {k: v.copy() for k, v in net.named_parameters()}
    del tensors["5_linear.weight"]
    tensors["1_batchnorm2d.bias"] = np.zeros(3, np.float32)
    path = _saved_with(tmp_path, net, tensors)

    def no_params(self, *args, **kwargs):
        raise AssertionError("a parameter was made before the check")
    monkeypatch.setattr(cconv.nn.base.Layer, "add_param", no_params)
    with pytest.raises(WeightsMismatchError) as info:
        cconv.load(path)
    report = info.value.report
    assert report.missing == ["5_linear.weight"]
    assert report.mismatched == [("1_batchnorm2d.bias", "(4,) float32", "(3,) float32")]


def test_param_shapes_match_what_build_makes():
    from cconv.nn import ConvTranspose2d, PReLU
    from cconv.nn.elementwise import ConstantOp
    cases = [(Conv2d(4, 6, 3, groups=2), (4, 9, 9)), (Conv2d(2, 3, (1, 2), bias=False), (2, 5, 5)),
             (ConvTranspose2d(4, 6, 3, groups=2), (4, 5, 5)), (Linear(7, 3), (2, 7)),
             (BatchNorm2d(3), (3, 4, 4)), (BatchNorm2d(3, affine=False), (3, 4, 4)),
             (PReLU(3), (3, 4, 4)), (ReLU(), (3, 4, 4)), (ConstantOp("add", shape=(3, 1, 1)),
                                                           (3, 4, 4))]
    for layer, shape in cases:
        declared = layer.param_shapes([shape])
        layer.build([shape], rng=0)
        assert declared == {k: v.shape for k, v in layer.params.items()}, layer
        assert io._declares_params(layer)


def test_layer_without_param_shapes_is_built_alone_to_see(tmp_path):
    from cconv.nn.base import Layer

    class Scale(Layer):   # a plugin-style layer that does not declare its parameters
        def output_shape(self, input_shapes):
            return tuple(input_shapes[0])

        def build(self, input_shapes, rng=None):
            self.add_param("s", np.ones(input_shapes[0][0], np.float32))
            super().build(input_shapes, rng)

    class Quiet(ReLU):   # inherits ReLU's {} but builds a parameter: not trusted
        def build(self, input_shapes, rng=None):
            self.add_param("q", np.ones(2, np.float32))
            super().build(input_shapes, rng)

    g = Graph(inputs=["x"])
    g.add("a", Scale(), inputs=["x"])
    g.add("b", Quiet(), inputs=["a"])
    g.set_outputs(["b"])
    expected = io._expected_parameters(g, {"input_shapes": [(3, 2, 2)]})
    assert expected == {"a.s": ((3,), np.dtype("float32")), "b.q": ((2,), np.dtype("float32"))}
    assert not io._declares_params(Quiet())


@pytest.mark.parametrize("header", [
    (b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
     b'"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'),               # duplicate key
    (b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
     b'"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}'),               # overlap
    b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}",                             # deep list
    b'{"a":' + b'{"b":' * 5000 + b"1" + b"}" * 5000 + b"}",                  # deep object
    b"[" + b"[]," * 1000 + b"[]]",                                            # not an object
    b'{"a":{},"b":{},"c":{}}',                                                # empty entries
    b'{"a":{"dtype":"F32","shape":[' + b"9" * 5000 + b'],"data_offsets":[0,8]}}',
])
def test_hostile_headers_are_weight_file_errors(tmp_path, header):
    path = tmp_path / "h.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(8))
    with pytest.raises(WeightFileError, match="h.safetensors"):
        io.read_safetensors(path)


def test_header_strings_may_hold_any_brackets(tmp_path):
    from safetensors.numpy import save as st_save
    meta = {"c": 'x"{[[{\\"}', "d": "\\", "e": "{" * 100}
    path = tmp_path / "ok.safetensors"
    path.write_bytes(st_save({"a\\\"{": np.ones(2, np.float32)}, metadata=meta))
    tensors, metadata = io.read_safetensors(path)
    assert metadata == meta and list(tensors) == ['a\\"{']
