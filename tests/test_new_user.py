"""The traps a new user fell into (each test failed before its fix).

An optimizer made before build(), predict's preprocessing, print(net), signed
filter responses, mapping="by_order", convert's hints, conv2d_algorithms taking
what conv2d takes, one-line CLI errors, progress of long commands, bench results
outside the checkout, and tests that leave the environment alone.
"""
import importlib.util
import json
import os
import re
import sys

import numpy as np
import pytest

import cconv
from cconv import cli, nn, ops
from cconv.optim import SGD, Adam
from cconv.preprocessing import Preprocessing, PreprocessingWarning

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small_net():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def blobs(rng, n=48):
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 1, 8, 8)).astype(np.float32) + y[:, None, None, None]
    return x, y


# ---------------------------------------------------------------- optimizer before build

def test_optimizer_made_before_build_trains_the_net(rng):
    net = small_net()
    optimizer = Adam(net, lr=1e-2)           # the net has no parameters yet
    x, y = blobs(rng)
    net.build(x.shape[1:], seed=0)
    before = {k: v.copy() for k, v in net.named_parameters()}
    cconv.fit(net, x, y, epochs=2, batch_size=16, optimizer=optimizer, progress=False)
    assert optimizer.param_groups[0]["params"] == [k for k, _ in net.named_parameters()]
    assert all(not np.array_equal(before[k], v) for k, v in net.named_parameters())


def test_optimizer_made_before_build_even_when_fit_builds(rng):
    net = small_net()
    optimizer = SGD(net, lr=0.1, momentum=0.9)
    x, y = blobs(rng)
    history = cconv.fit(net, x, y, epochs=3, batch_size=16, optimizer=optimizer,
                        progress=False)
    assert history["loss"][-1] < history["loss"][0]


def test_an_unbuilt_optimizer_says_so_instead_of_doing_nothing():
    net = small_net()
    optimizer = Adam(net)
    with pytest.raises(RuntimeError, match=r"not built yet.*net.build"):
        optimizer.step()


def test_fit_refuses_an_optimizer_of_another_net(rng):
    x, y = blobs(rng)
    net, other = small_net().build((1, 8, 8)), small_net().build((1, 8, 8))
    with pytest.raises(ValueError, match="made for another net"):
        cconv.fit(net, x, y, epochs=1, optimizer=Adam(other), progress=False)


# ---------------------------------------------------------------- preprocessing

def test_preprocessing_round_trips_through_the_model_file(tmp_path):
    net = small_net().build((1, 8, 8))
    prep = Preprocessing(scale=255, mean=[0.5], std=[0.25], raw_range=(0, 255))
    path = tmp_path / "m.safetensors"
    cconv.save(net, path, preprocessing=prep)
    _, metadata = cconv.io.read_safetensors(path)
    assert Preprocessing.from_metadata(metadata) == prep
    raw = np.full((2, 1, 8, 8), 191.25, np.float32)
    np.testing.assert_allclose(prep.apply(raw), (191.25 / 255 - 0.5) / 0.25, rtol=1e-6)
    # files written before the spec existed: input_scale only
    assert Preprocessing.from_metadata({"input_scale": "16"}) == Preprocessing(scale=16)
    assert Preprocessing.from_metadata({}) is None


@pytest.mark.parametrize("kwargs,message", [
    ({"scale": 0}, "scale must be a finite non-zero"),
    ({"std": [1, 0]}, "std must be non-zero"),
    ({"mean": "a"}, "mean must be a finite number"),
    ({"raw_range": (3, 1)}, "raw_range must be"),
])
def test_preprocessing_refuses_bad_specs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Preprocessing(**kwargs)


def test_preprocessing_warns_about_inputs_already_scaled():
    prep = Preprocessing(scale=16, raw_range=(0, 16))
    with pytest.warns(PreprocessingWarning, match="look already scaled"):
        prep.apply(np.random.default_rng(0).random((2, 1, 8, 8)))
    with pytest.warns(PreprocessingWarning, match="trained on raw values in"):
        prep.apply(np.full((1, 1, 8, 8), 255.0))


@pytest.fixture(scope="module")
def digits_file(tmp_path_factory):
    pytest.importorskip("sklearn")
    from cconv.examples import digits

    path = tmp_path_factory.mktemp("digits") / "digits.safetensors"
    digits.train(epochs=2, out=str(path), progress=False, log=lambda *a: None)
    return path


def test_predict_applies_the_stored_preprocessing_and_warns(digits_file, tmp_path, capsys):
    from sklearn.datasets import load_digits

    images = load_digits().images[:20]
    raw, scaled = tmp_path / "raw.npy", tmp_path / "scaled.npy"
    np.save(raw, images)
    np.save(scaled, images / 16)
    assert cli.main(["predict", str(digits_file), str(raw), "--out", str(tmp_path / "a.npy")]) == 0
    assert "warning" not in capsys.readouterr().err
    assert cli.main(["predict", str(digits_file), str(scaled)]) == 0
    assert "look already scaled" in capsys.readouterr().err
    assert cli.main(["predict", str(digits_file), str(scaled), "--scale", "1",
                     "--out", str(tmp_path / "b.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"),
                               rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- print(net)

def test_print_net_shows_a_layer_table():
    net = small_net()
    text = str(net)
    assert "not built" in text and "Conv2d(" in text
    net.build((1, 8, 8))
    lines = str(net).splitlines()
    assert lines[0] == "Sequential"
    assert lines[1].split() == ["node", "layer", "inputs", "output", "(per", "sample)",
                                "params"]
    conv = next(line for line in lines if line.startswith("0_conv2d"))
    assert "Conv2d(in_ch=1" in conv and "(4, 8, 8)" in conv and conv.endswith("40")
    assert "total parameters: 235 (235 trainable); inputs x (N, 1, 8, 8)" in lines[-1]


# ---------------------------------------------------------------- filter signs

@pytest.fixture
def ramp_png(tmp_path):
    image = pytest.importorskip("PIL.Image")
    x = np.zeros((16, 16), np.uint8)
    x[:, 8:] = 200                    # one rising edge ...
    x[:, 12:] = 40                    # ... and one falling edge
    path = tmp_path / "ramp.png"
    image.fromarray(x).save(path)
    return image, path, x


def test_filter_shows_both_signs_of_a_sobel_response(ramp_png, tmp_path, capsys):
    image, path, x = ramp_png
    out = tmp_path / "edges.png"
    assert cli.main(["filter", str(path), "-k", "sobel_vertical", "-o", str(out)]) == 0
    assert "mid-grey" in capsys.readouterr().err
    got = np.asarray(image.open(out)).astype(int)
    flat = got[8, 2]
    assert flat in (127, 128)                      # zero response -> mid-grey
    assert got[8].max() > flat + 60 and got[8].min() < flat - 60   # both edges survive
    clipped = tmp_path / "clipped.png"
    assert cli.main(["filter", str(path), "-k", "sobel_vertical", "--signed", "clip",
                     "-o", str(clipped)]) == 0
    assert np.asarray(image.open(clipped)).min() == 0     # the old view: negatives cut


def test_filter_keeps_plain_kernels_as_they_were(ramp_png, tmp_path):
    image, path, x = ramp_png
    out = tmp_path / "sharp.png"
    assert cli.main(["filter", str(path), "-k", "sharpen", "-o", str(out)]) == 0
    np.testing.assert_array_equal(np.asarray(image.open(out)),
                                  cconv.filters.filter2d(x, cconv.filters.sharpen()))


# ---------------------------------------------------------------- weights by order

def test_load_weights_mapping_by_order():
    net = small_net().build((1, 8, 8), seed=1)
    source = {f"layer{i}": np.asarray(v) + 1 for i, (_, v) in
              enumerate(net.named_parameters())}
    report = cconv.load_weights(net, source, mapping="by_order")
    assert report.ok and len(report.loaded) == 4
    np.testing.assert_array_equal(net.named_parameters()[0][1], source["layer0"])


def test_a_name_mismatch_suggests_by_order():
    net = small_net().build((1, 8, 8))
    source = {f"layer{i}": np.asarray(v) for i, (_, v) in enumerate(net.named_parameters())}
    report = cconv.load_weights(net, source, dry_run=True)
    assert not report.ok
    assert any("by_order" in h and "--by-order" in h for h in report.hints)


def test_a_torch_file_without_its_plugin_names_the_install_line(tmp_path, monkeypatch):
    monkeypatch.setenv("CCONV_DISABLE_PLUGIN_AUTOLOAD", "1")
    cconv.plugins.reset()
    try:
        path = tmp_path / "w.pt"
        path.write_bytes(b"PK\x03\x04 not really")
        with pytest.raises(cconv.io.WeightFileError,
                           match=r"pip install \./plugins/cconv-torch"):
            cconv.load_weights(small_net().build((1, 8, 8)), path)
    finally:
        monkeypatch.delenv("CCONV_DISABLE_PLUGIN_AUTOLOAD")
        cconv.plugins.reset()


# ---------------------------------------------------------------- conv2d_algorithms

def test_conv2d_algorithms_takes_what_conv2d_takes(rng):
    x = rng.random((1, 32, 20, 20), dtype=np.float32)
    w = rng.random((32, 32, 3, 3), dtype=np.float32)
    by_arrays = ops.conv2d_algorithms(x, w, padding="same")
    assert by_arrays == ops.conv2d_algorithms(x.shape, w.shape, (1, 1), (1, 1, 1, 1),
                                              (1, 1), 1)
    assert by_arrays == ops.conv2d_algorithms(x, w, padding=1)
    assert by_arrays == ops.conv2d_algorithms(x, w, padding=((1, 1), (1, 1)))
    y = ops.conv2d(x, w, padding="same", algorithm=by_arrays[-1])
    np.testing.assert_allclose(y, ops.conv2d(x, w, padding=1), rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="channel mismatch"):
        ops.conv2d_algorithms(x, w[:, :3])


# ---------------------------------------------------------------- CLI messages

@pytest.fixture
def config_only(tmp_path):
    """A model file with a network config but none of its tensors."""
    from safetensors.numpy import save_file

    net = small_net().build((1, 8, 8))
    path = tmp_path / "config_only.safetensors"
    save_file({}, str(path), metadata={cconv.io.CONFIG_KEY: json.dumps(net.get_config())})
    return path


@pytest.mark.parametrize("command", [["summary"], ["predict"], ["hessian", "--data", "digits"]])
def test_cli_answers_a_config_only_file_in_one_line(config_only, tmp_path, command, capsys):
    images = tmp_path / "x.npy"
    np.save(images, np.zeros((1, 1, 8, 8)))
    argv = [command[0], str(config_only)] + (
        [str(images)] if command[0] == "predict" else command[1:])
    try:
        rc = cli.main(argv)
    except SystemExit as exc:      # the commands' own refusals
        rc, message = 1, str(exc.code)
    else:
        message = capsys.readouterr().err
    assert rc != 0
    assert "0_conv2d.weight" in message and "Traceback" not in message
    assert len(message.strip().splitlines()) == 1


def test_import_into_a_missing_folder_is_one_line(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not onnx")
    rc = cli.main(["import", str(model), "-o", str(tmp_path / "missing" / "y.safetensors")])
    err = capsys.readouterr().err
    assert rc == 1 and "does not exist" in err and ".tmp" not in err
    assert len(err.strip().splitlines()) == 1


def test_save_into_a_missing_folder_names_the_target(tmp_path):
    target = tmp_path / "missing" / "m.safetensors"
    with pytest.raises(FileNotFoundError, match="does not exist") as info:
        cconv.save(small_net().build((1, 8, 8)), target)
    assert info.value.filename == str(target)


@pytest.mark.parametrize("command", ["summary", "hessian", "predict", "convert"])
def test_cli_answers_a_corrupt_file_in_one_line(tmp_path, command, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 16)
    argv = {"summary": ["summary", str(bad)], "hessian": ["hessian", str(bad)],
            "predict": ["predict", str(bad), "--digits", "0"],
            "convert": ["convert", str(bad), "--arch", "digits", "--dry-run"]}[command]
    try:
        rc = cli.main(argv)
        message = capsys.readouterr().err
    except SystemExit as exc:
        rc, message = 1, str(exc.code)
    assert rc != 0 and "Traceback" not in message
    assert str(bad) in message or "bad.safetensors" in message


def test_hessian_shows_progress(digits_file, capsys):
    assert cli.main(["hessian", str(digits_file), "--samples", "16", "-k", "1",
                     "--max-iter", "12", "--trace-samples", "2"]) == 0
    err = capsys.readouterr().err
    assert "Hessian-vector products" in err and "hvp" in err


# ---------------------------------------------------------------- bench results

def _bench_run_module():
    spec = importlib.util.spec_from_file_location("bench_run", os.path.join(REPO, "bench",
                                                                            "run.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_writes_outside_the_committed_results(monkeypatch):
    sys.path.insert(0, os.path.join(REPO, "bench"))
    try:
        import _machine
    finally:
        sys.path.remove(os.path.join(REPO, "bench"))
    monkeypatch.delenv("CCONV_BENCH_SAVE", raising=False)
    assert _machine.results_dir().parts[-2:] == ("results", "local")
    monkeypatch.setenv("CCONV_BENCH_SAVE", "1")
    assert _machine.results_dir().parts[-1] == "results"
    ignored = open(os.path.join(REPO, ".gitignore")).read()
    assert "bench/results/local/" in ignored


def test_bench_summary_shows_a_missing_anchor(monkeypatch):
    run = _bench_run_module()
    real = importlib.util.find_spec
    monkeypatch.setattr(run, "_version", lambda dist: None if dist == "torch" else "1.0")
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))
    status = run.anchor_status()
    assert status["torch"].startswith("not installed: pip install torch==2.13.0")
    info = {"cpu": "x", "flags": [], "cpus_available": 2, "cpu_count": 2,
            "threads_benchmarked": [1], "date_utc": "now", "load_average_before": (0, 0, 0),
            "versions": {}, "anchors": status}
    text = run.markdown(info, [], [])
    assert re.search(r"\| torch: every row against it .*not installed.*\*\*missing\*\*", text)


def test_bench_extra_installs_the_anchors():
    text = open(os.path.join(REPO, "pyproject.toml")).read()
    extra = re.search(r"^bench = \[(.*?)\]", text, re.S | re.M).group(1)
    for package in ("onnxruntime", "opencv-python-headless", "matplotlib", "threadpoolctl"):
        assert package in extra


# ---------------------------------------------------------------- the environment

def test_no_test_installs_into_the_environment_it_runs_in():
    """Packaging tests build wheels into temporary folders (conftest.build_wheel);
    nothing runs `pip install` into this interpreter's environment."""
    offenders = []
    tests = os.path.dirname(os.path.abspath(__file__))
    for name in sorted(os.listdir(tests)):
        if not name.endswith(".py") or name == os.path.basename(__file__):
            continue
        text = open(os.path.join(tests, name)).read()
        if re.search(r"""["']pip["'],\s*["']install["']""", text):
            offenders.append(name)
    assert offenders == []
