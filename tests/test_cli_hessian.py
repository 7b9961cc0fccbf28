"""`cconv hessian` and `cconv summary` on a saved digits-shaped model."""
import json
import subprocess
import sys

import numpy as np
import pytest

import cconv
from cconv import analysis, cli

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """The digits architecture, briefly trained on a few images (fast), saved as
    `cconv train digits` saves it."""
    from cconv.examples import digits
    from cconv.optim import Adam
    from cconv.train import fit

    x, y, _, _ = digits.load_data()
    net = digits.build_model(seed=0)
    fit(net, x[:256], y[:256], epochs=3, batch_size=32, optimizer=Adam(net, lr=3e-3),
        seed=0, progress=False)
    path = tmp_path_factory.mktemp("model") / "digits.safetensors"
    cconv.save(net, path, metadata={"example": "digits", "input_scale": "16.0"})
    return path, x, y


def test_hessian_json_matches_the_library(digits_model, capsys):
    path, x, y = digits_model
    assert cli.main(["hessian", str(path), "--samples", "48", "-k", "2",
                     "--trace-samples", "4", "--max-iter", "60", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["parameters"] == 21386 and out["samples"] == 48
    assert out["data"] == "digits train split" and out["mode"] == "eval"
    assert out["classification"] in {"minimum", "maximum", "saddle", "degenerate"}
    assert len(out["top_eigenvalues"]) == 2 and len(out["bottom_eigenvalues"]) == 2
    assert out["top_eigenvalues"][0] >= out["top_eigenvalues"][1]
    assert out["lanczos"]["iterations"] <= 60 and "trace" in out
    ref = analysis.top_eigenvalues(cconv.load(path), "cross_entropy", x[:48], y[:48], k=1,
                                   max_iter=60)
    assert out["top_eigenvalues"][0] == pytest.approx(ref.eigenvalues[-1], rel=1e-8)


def test_hessian_text_dense_subset_and_refusal(digits_model, capsys):
    path, _, _ = digits_model
    assert cli.main(["hessian", str(path), "--samples", "32", "--dense",
                     "--params", "11_linear"]) == 0
    text = capsys.readouterr().out
    assert "850 parameters -> 5.78 MB" in text
    assert "largest eigenvalues:" in text and "smallest eigenvalues:" in text
    assert "classification:" in text and "trace:" in text and "exact (dense)" in text
    with pytest.raises(SystemExit, match=r"21386 parameters -> 3.66 GB .* refused"):
        cli.main(["hessian", str(path), "--samples", "8", "--dense"])
    with pytest.raises(SystemExit, match="no parameter"):
        cli.main(["hessian", str(path), "--samples", "8", "--params", "nope"])


def test_hessian_needs_data_for_other_models(tmp_path, capsys):
    net = cconv.Sequential(cconv.nn.Linear(3, 2)).build((3,))
    path = tmp_path / "m.safetensors"
    cconv.save(net, path)
    with pytest.raises(SystemExit, match="--data"):
        cli.main(["hessian", str(path)])
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.standard_normal((10, 3)), y=rng.integers(0, 2, 10))
    assert cli.main(["hessian", str(path), "--data", str(tmp_path / "d.npz"), "--json",
                     "--dense"]) == 0
    out = json.loads(capsys.readouterr().out)
    # softmax regression: convex, flat along "add a constant to every logit"
    assert out["classification"] == "degenerate" and out["parameters"] == 8


def test_summary_command(digits_model, capsys):
    path, _, _ = digits_model
    assert cli.main(["summary", str(path)]) == 0
    text = capsys.readouterr().out
    assert "0_conv2d" in text and "21,386" in text and "Rule of thumb" in text
    assert cli.main(["summary", "digits", "--json", "--batch-size", "2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["weights"] == 21386 and data["batch_size"] == 2
    with pytest.raises(SystemExit, match="cconv summary"):
        cli.main(["summary", str(path) + ".missing"])


@pytest.mark.slow
def test_trained_digits_net_end_to_end(tmp_path):
    """`cconv train digits` then `cconv hessian` on the full training split."""
    model = tmp_path / "digits.safetensors"
    subprocess.run([sys.executable, "-m", "cconv", "train", "digits", "--out", str(model),
                    "--no-progress"], check=True, timeout=600)
    done = subprocess.run([sys.executable, "-m", "cconv", "hessian", str(model), "--json"],
                          check=True, capture_output=True, text=True, timeout=900)
    out = json.loads(done.stdout)
    assert out["samples"] > 1000 and out["top_eigenvalues"][0] > 0
    assert out["gradient_norm"] < 0.1
    assert out["classification"] in {"saddle", "degenerate", "minimum"}
