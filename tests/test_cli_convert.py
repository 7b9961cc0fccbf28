"""`cconv convert`: a foreign checkpoint onto a cconv architecture, saved as a model."""
import json
import os
import sys

import numpy as np
import pytest
import torch_files as tf

import cconv
from cconv.cli import main
from cconv.examples import digits
from cconv.graph import Sequential
from cconv.nn import BatchNorm2d, Conv2d, Flatten, Linear, ReLU

PLUGIN_SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "plugins", "cconv-torch", "src")
if PLUGIN_SRC not in sys.path:
    sys.path.insert(0, PLUGIN_SRC)

import cconv_torch


@pytest.fixture(autouse=True)
def torch_plugin(cconv_plugin):
    cconv_plugin(cconv_torch, name="torch-test")


def params(net):
    return {name: value.copy() for name, value in net.named_parameters()}


def bn_net(seed=0):
    return Sequential(Conv2d(1, 3, 3, padding=1), BatchNorm2d(3), ReLU(), Flatten(),
                      Linear(3 * 4 * 4, 5)).build((1, 4, 4), seed=seed)


def torch_names(weights):
    """cconv Sequential names as torch.nn.Sequential (under DataParallel) names them."""
    return {f"module.{n.split('_', 1)[0]}.{n.split('.', 1)[1]}": v for n, v in weights.items()}


def test_convert_by_order_onto_a_bundled_example(tmp_path, capsys):
    source = digits.build_model(seed=5)
    weights = params(source)
    foreign = {f"layer{i}.{n.split('.')[1]}": v.astype(np.float64)
               for i, (n, v) in enumerate(weights.items())}
    ckpt = tf.write(tmp_path / "lenet.pt", {"state_dict": tf.state_dict_obj(foreign)}, "legacy")
    out = tmp_path / "lenet.safetensors"
    assert main(["convert", str(ckpt), "--arch", "digits", "--by-order", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"loaded {len(weights)} tensor(s)" in text and "float64->float32" in text
    net = cconv.load(out)
    for name, value in net.named_parameters():
        np.testing.assert_array_equal(value, weights[name].astype(np.float64).astype(np.float32))
    x = np.random.default_rng(0).random((3, 1, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(net(x), source(x))


def test_convert_arch_json_with_prefix_rules_and_dry_run(tmp_path, capsys):
    net = bn_net(seed=1)
    weights = params(net)
    foreign = torch_names(weights)
    foreign["module.1.num_batches_tracked"] = np.array(10)
    ckpt = tf.write(tmp_path / "w.pth", {"model": tf.state_dict_obj(foreign)}, "zip")
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(net.get_config()))
    out = tmp_path / "model.safetensors"
    argv = ["convert", str(ckpt), "--arch", str(arch), "-o", str(out), "--strip-prefix",
            "module.", "--rename", r"^0\.=0_conv2d.", "--rename", r"^1\.=1_batchnorm2d.",
            "--rename", r"^4\.=4_linear."]
    assert main(argv + ["--dry-run", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["dry_run"] and not out.exists()
    assert report["skipped"] == ["module.1.num_batches_tracked"]
    assert main(argv) == 0
    loaded = params(cconv.load(out))
    for name, value in weights.items():
        np.testing.assert_array_equal(loaded[name], value)


def test_convert_mismatch_writes_nothing(tmp_path, capsys):
    weights = params(bn_net(seed=1))
    ckpt = tf.write(tmp_path / "w.pt", tf.state_dict_obj(weights), "zip")
    arch = tmp_path / "arch.json"
    other = Sequential(Conv2d(1, 4, 3, padding=1), BatchNorm2d(4), ReLU(), Flatten(),
                       Linear(4 * 4 * 4, 5)).build((1, 4, 4))
    arch.write_text(json.dumps(other.get_config()))
    out = tmp_path / "model.safetensors"
    assert main(["convert", str(ckpt), "--arch", str(arch), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "0_conv2d.weight: net has (4, 1, 3, 3) float32" in err and "nothing was written" in err
    assert not out.exists()
    assert main(["convert", str(ckpt), "--arch", str(arch), "--dry-run"]) == 1


def test_convert_layout_from_safetensors(tmp_path):
    from safetensors.numpy import save_file

    weights = params(bn_net(seed=2))
    hwio = dict(weights)
    hwio["0_conv2d.weight"] = np.transpose(weights["0_conv2d.weight"], (2, 3, 1, 0)).copy()
    hwio["4_linear.weight"] = weights["4_linear.weight"].T.copy()
    ckpt = tmp_path / "tf.safetensors"
    save_file(hwio, str(ckpt))
    saved = tmp_path / "arch.safetensors"
    cconv.save(bn_net(seed=9), saved)
    out = tmp_path / "out.safetensors"
    assert main(["convert", str(ckpt), "--arch", str(saved), "-o", str(out),
                 "--layout", r"conv2d\.weight$:HWIO->OIHW", "--layout",
                 r"linear\.weight$:IO->OI"]) == 0
    loaded = params(cconv.load(out))
    for name, value in weights.items():
        np.testing.assert_array_equal(loaded[name], value)


@pytest.mark.parametrize("argv, match", [
    (["--arch", "nope", "--dry-run"], "neither a file nor a bundled example"),
    (["--arch", "digits"], "-o OUT"),
    (["--arch", "digits", "--dry-run", "--rename", "noequals"], "OLD=NEW"),
])
def test_convert_bad_arguments(tmp_path, argv, match):
    ckpt = tf.write(tmp_path / "w.pt", tf.state_dict_obj({"w": np.zeros(2, np.float32)}), "zip")
    with pytest.raises(SystemExit, match=match):
        main(["convert", str(ckpt)] + argv)


def test_convert_refuses_a_malicious_checkpoint(tmp_path):
    target = tmp_path / "pwned"
    evil = tf.Reduce(tf.Global("os", "system"), (f"touch {target}",))
    ckpt = tf.write(tmp_path / "evil.pt", {"state_dict": evil}, "zip")
    with pytest.raises(SystemExit, match="os.system"):
        main(["convert", str(ckpt), "--arch", "digits", "-o", str(tmp_path / "o.st")])
    assert not target.exists() and not (tmp_path / "o.st").exists()


def test_convert_key_picks_the_state_dict(tmp_path):
    weights = params(bn_net(seed=3))
    decoy = {n: np.zeros_like(v) for n, v in weights.items()}
    ckpt = tf.write(tmp_path / "ema.pt", {"model": tf.state_dict_obj(decoy),
                                          "ema": tf.state_dict_obj(weights)}, "zip")
    saved = tmp_path / "arch.safetensors"
    cconv.save(bn_net(), saved)
    out = tmp_path / "out.safetensors"
    assert main(["convert", str(ckpt), "--arch", str(saved), "--key", "ema", "-o",
                 str(out)]) == 0
    loaded = params(cconv.load(out))
    for name, value in weights.items():
        np.testing.assert_array_equal(loaded[name], value)
    with pytest.raises(SystemExit, match="key 'nope'"):
        main(["convert", str(ckpt), "--arch", str(saved), "--key", "nope", "--dry-run"])
