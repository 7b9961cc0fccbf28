"""cconv.load_weights: mapping foreign names, layouts and dtypes onto a net, checked first."""
import json
import struct

import numpy as np
import pytest

import cconv
from cconv import ops, plugins
from cconv.graph import Sequential
from cconv.io import LoadReport, WeightFileError, WeightsMismatchError
from cconv.nn import BatchNorm2d, Conv2d, Flatten, Linear, ReLU
from cconv.weightmap import NameMap, layout_axes


def small_net(seed=0):
    return Sequential(Conv2d(2, 3, 3, padding=1), BatchNorm2d(3), ReLU(), Flatten(),
                      Linear(3 * 4 * 4, 5)).build((2, 4, 4), seed=seed)


def params(net):
    return {name: value.copy() for name, value in net.named_parameters()}


def assert_params(net, expected):
    got = params(net)
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)


def torch_style(weights):
    """The same weights under torch.nn.Sequential names, with DataParallel's prefix."""
    index = {"0_conv2d": "0", "1_batchnorm2d": "1", "4_linear": "4"}
    return {f"module.{index[n.split('.')[0]]}.{n.split('.')[1]}": v for n, v in weights.items()}


# ---------------------------------------------------------------- mapping

def test_top_level_function_and_method_agree():
    weights = params(small_net(seed=1))
    a, b = small_net(), small_net()
    assert cconv.load_weights(a, weights).ok
    assert b.load_weights(weights, mapping=None).ok
    assert_params(a, weights)
    assert_params(b, weights)


def test_prefix_and_regex_rules():
    weights = params(small_net(seed=1))
    foreign = torch_style(weights)
    rules = [(r"^0\.", "0_conv2d."), (r"^1\.", "1_batchnorm2d."), (r"^4\.", "4_linear.")]
    net = small_net()
    report = cconv.load_weights(net, foreign, mapping=NameMap(strip_prefix="module.",
                                                              rename=rules))
    assert report.ok and len(report.renamed) == len(weights)
    assert report.renamed["module.4.bias"] == "4_linear.bias"
    assert_params(net, weights)


def test_exact_names_dict_and_callable():
    weights = params(small_net(seed=1))
    renamed = {f"x.{n}": v for n, v in weights.items()}
    net = small_net()
    assert cconv.load_weights(net, renamed, mapping={f"x.{n}": n for n in weights}).ok
    assert_params(net, weights)
    net = small_net()
    assert cconv.load_weights(net, renamed, mapping=lambda n: n[2:]).ok
    assert_params(net, weights)
    net = small_net()
    assert cconv.load_weights(net, renamed, mapping="x.").ok   # a prefix to strip
    assert_params(net, weights)


def test_callable_none_skips_on_purpose():
    weights = params(small_net(seed=1))
    weights["1_batchnorm2d.num_batches_tracked"] = np.array(7)
    net = small_net()
    report = cconv.load_weights(
        net, weights, mapping=lambda n: None if n.endswith("num_batches_tracked") else n)
    assert report.ok and report.skipped == ["1_batchnorm2d.num_batches_tracked"]
    assert "skipped on purpose" in str(report)
    with pytest.raises(WeightsMismatchError, match="num_batches_tracked"):
        cconv.load_weights(small_net(), weights)


def test_by_order_pairs_names_and_still_checks_shapes():
    weights = params(small_net(seed=1))
    foreign = {f"layer{i}": v for i, v in enumerate(weights.values())}
    foreign["bn.num_batches_tracked"] = np.array(3)
    net = small_net()
    report = cconv.load_weights(net, foreign,
                                mapping=NameMap(by_order=True, drop=r"num_batches_tracked$"))
    assert report.ok and report.skipped == ["bn.num_batches_tracked"]
    assert_params(net, weights)
    shuffled = dict(reversed(list(foreign.items())))
    with pytest.raises(WeightsMismatchError, match="4_linear.weight: net has"):
        cconv.load_weights(small_net(), shuffled,
                           mapping=NameMap(by_order=True, drop=r"num_batches_tracked$"))


def test_two_sources_onto_one_name_is_an_error():
    weights = params(small_net(seed=1))
    weights["copy.0_conv2d.bias"] = weights["0_conv2d.bias"]
    net = small_net()
    before = params(net)
    with pytest.raises(ValueError, match="both '0_conv2d.bias' and 'copy.0_conv2d.bias'"):
        cconv.load_weights(net, weights, mapping="copy.")
    assert_params(net, before)


def test_prefix_hint_in_the_error():
    foreign = {f"backbone.{n}": v for n, v in params(small_net(seed=1)).items()}
    with pytest.raises(WeightsMismatchError, match="try mapping='backbone.'"):
        cconv.load_weights(small_net(), foreign)


@pytest.mark.parametrize("bad, match", [(42, "mapping must be"),
                                        ([("(", "x")], "not a valid regular expression"),
                                        ([("a", "b", "c")], "pair")])
def test_bad_mappings_are_clear(bad, match):
    with pytest.raises((TypeError, ValueError), match=match):
        cconv.load_weights(small_net(), params(small_net()), mapping=bad)


# ---------------------------------------------------------------- layouts

def test_hwio_to_oihw_and_linear_in_out(rng):
    net = small_net(seed=1)
    weights = params(net)
    keras = dict(weights)
    keras["0_conv2d.weight"] = np.transpose(weights["0_conv2d.weight"], (2, 3, 1, 0)).copy()
    keras["4_linear.weight"] = weights["4_linear.weight"].T.copy()
    target = small_net()
    report = cconv.load_weights(target, keras, layout=["HWIO->OIHW", "IO->OI"])
    assert report.ok
    assert ("0_conv2d.weight", "HWIO->OIHW") in report.converted
    assert_params(target, weights)
    x = rng.standard_normal((2, 2, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(target(x), net(x))
    # a conv over HWIO weights as TF would run it: same result after conversion
    ref = ops.conv2d(x, np.transpose(keras["0_conv2d.weight"], (3, 2, 0, 1)), padding=1)
    np.testing.assert_allclose(ref, ops.conv2d(x, target["0_conv2d"].params["weight"],
                                               padding=1), rtol=1e-6)


def test_layout_by_name_pattern():
    weights = params(small_net(seed=1))
    foreign = dict(weights)
    foreign["4_linear.weight"] = weights["4_linear.weight"].T.copy()
    net = small_net()
    report = cconv.load_weights(net, foreign, layout={r"linear\.weight$": (1, 0)})
    assert report.ok and report.converted == [("4_linear.weight", "transpose(1, 0)")]
    assert_params(net, weights)
    net = small_net()
    with pytest.raises(WeightsMismatchError, match="4_linear.weight"):
        cconv.load_weights(net, foreign)      # not asked: a plain shape mismatch


def test_layout_spec_errors():
    assert layout_axes("HWIO->OIHW") == (3, 2, 0, 1)
    for bad in ("HWIO", "HWIO->OIH", "HHIO->OIHH"):
        with pytest.raises(ValueError, match="SRC->DST"):
            layout_axes(bad)
    with pytest.raises(ValueError, match="two conversions"):
        cconv.load_weights(small_net(), {}, layout=["IO->OI", "AB->AB"])


# ---------------------------------------------------------------- dtypes

def test_dtype_mismatch_unless_cast():
    weights = params(small_net(seed=1))
    foreign = {n: v.astype(np.float64) for n, v in weights.items()}
    foreign["1_batchnorm2d.running_mean"] = np.array([1, -2, 3], np.int64)
    net = small_net()
    before = params(net)
    with pytest.raises(WeightsMismatchError, match="pass cast=True"):
        cconv.load_weights(net, foreign)
    assert_params(net, before)
    report = cconv.load_weights(net, foreign, cast=True)
    assert report.ok and ("1_batchnorm2d.running_mean", "int64->float32") in report.converted
    expected = {n: v.astype(np.float32) for n, v in foreign.items()}
    assert_params(net, expected)
    assert all(v.dtype == np.float32 for _, v in net.named_parameters())


def test_cast_refuses_overflow_and_non_numbers():
    weights = params(small_net(seed=1))
    weights["0_conv2d.bias"] = np.array([1e300, 0, 0])
    net = small_net()
    before = params(net)
    with pytest.raises(WeightsMismatchError, match="overflow float32"):
        cconv.load_weights(net, weights, cast=True)
    weights["0_conv2d.bias"] = np.array(["a", "b", "c"])
    with pytest.raises(WeightsMismatchError, match="cannot cast"):
        cconv.load_weights(net, weights, cast=True)
    assert_params(net, before)


# ---------------------------------------------------------------- strict / dry run

def test_dry_run_reports_and_changes_nothing():
    weights = params(small_net(seed=1))
    weights.pop("4_linear.bias")
    weights["head.weight"] = np.zeros(1, np.float32)
    net = small_net()
    before = params(net)
    report = cconv.load_weights(net, weights, dry_run=True)
    assert not report.ok and report.dry_run
    assert report.missing == ["4_linear.bias"] and report.unexpected == ["head.weight"]
    assert "would load 7 tensor(s)" in str(report)
    assert_params(net, before)
    good = cconv.load_weights(net, params(small_net(seed=1)), dry_run=True)
    assert good.ok
    assert_params(net, before)
    json.dumps(report.as_dict())


def test_non_strict_loads_only_the_matching_and_reports_the_rest():
    source = params(small_net(seed=1))
    weights = dict(source)
    weights["4_linear.weight"] = np.zeros((5, 7), np.float32)
    weights["extra"] = np.zeros(3, np.float32)
    net = small_net()
    before = params(net)
    report = cconv.load_weights(net, weights, strict=False)
    assert [m[0] for m in report.mismatched] == ["4_linear.weight"]
    assert report.unexpected == ["extra"]
    got = params(net)
    np.testing.assert_array_equal(got["4_linear.weight"], before["4_linear.weight"])
    np.testing.assert_array_equal(got["0_conv2d.weight"], source["0_conv2d.weight"])


# ---------------------------------------------------------------- files and loaders

def test_bare_safetensors_state_dict(tmp_path):
    from safetensors.numpy import save_file

    weights = params(small_net(seed=1))
    path = tmp_path / "foreign.safetensors"
    save_file({f"model.{n}": v for n, v in weights.items()}, str(path),
              metadata={"format": "pt"})
    loaded = plugins.get_weight_loader("safetensors")(path)
    assert sorted(loaded) == sorted(f"model.{n}" for n in weights)
    net = small_net()
    assert cconv.load_weights(net, path, mapping="model.").ok
    assert_params(net, weights)


def write_safetensors(path, tensors):
    """A safetensors file by hand: {name: (dtype string, shape, raw bytes)}."""
    header, data = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)
    return path


def test_bf16_safetensors_widen_to_float32(tmp_path):
    values = np.array([[1.0, -2.5], [3.140625, 0.0078125]], np.float32)
    raw = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    path = write_safetensors(tmp_path / "bf16.safetensors", {"w": ("BF16", (2, 2), raw)})
    loaded = plugins.find_weight_loader(path)(path)
    assert loaded["w"].dtype == np.float32
    np.testing.assert_array_equal(loaded["w"], values)


def test_unknown_suffix_falls_back_to_safetensors_content(tmp_path):
    from safetensors.numpy import save_file

    weights = params(small_net(seed=1))
    path = tmp_path / "weights.st"
    save_file(weights, str(path))
    net = small_net()
    assert cconv.load_weights(net, path).ok
    assert_params(net, weights)
    other = tmp_path / "weights.xyz"
    other.write_bytes(b"not weights at all")
    with pytest.raises(WeightFileError, match=r"no weight loader.*\.xyz.*not a safetensors"):
        cconv.load_weights(net, other)
    assert_params(net, weights)


def test_loader_by_name_or_function(tmp_path):
    weights = params(small_net(seed=1))
    path = tmp_path / "w.npz"
    np.savez(path, **weights)
    net = small_net()
    report = cconv.load_weights(net, path, loader=lambda p: dict(np.load(p)))
    assert report.ok
    assert_params(net, weights)
    with pytest.raises(plugins.UnknownNameError, match="unknown weight loader 'npzz'"):
        cconv.load_weights(net, path, loader="npzz")
    with pytest.raises(TypeError, match="returned list"):
        cconv.load_weights(net, path, loader=lambda p: [1])
    with pytest.raises(TypeError, match="path or a dict"):
        cconv.load_weights(net, 3.5)


def test_report_is_a_load_report():
    report = cconv.load_weights(small_net(), params(small_net(seed=2)))
    assert isinstance(report, LoadReport) and report.ok and not report.dry_run
    assert report.as_dict()["loaded"] == report.loaded
