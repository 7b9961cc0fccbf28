"""fit / evaluate / predict, the digits example and the train/predict commands."""
import io as stdio

import numpy as np
import pytest

import cconv
from cconv.graph import Sequential
from cconv.nn import Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU
from cconv.optim import SGD, Adam, StepLR
from cconv.train import _Progress


def blobs(n=120, seed=0):
    """Three separable classes of 2x4x4 images."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.standard_normal((n, 2, 4, 4)).astype(np.float32) * 0.5
    x[:, 0] += y[:, None, None]
    return x, y


def net(seed=0, dropout=False):
    layers = [Conv2d(2, 4, 3, padding=1), ReLU(), MaxPool2d(2), Flatten()]
    if dropout:
        layers.append(Dropout(0.2))
    layers.append(Linear(16, 3))
    return Sequential(*layers).build((2, 4, 4), seed=seed)


def test_fit_history_and_learning():
    x, y = blobs()
    m = net()
    history = cconv.fit(m, x, y, epochs=8, batch_size=16, validation_split=0.25,
                        optimizer=Adam(m, lr=0.02), progress=False)
    assert set(history) >= {"loss", "accuracy", "val_loss", "val_accuracy", "time"}
    assert all(len(v) == 8 for v in history.values())
    assert history["loss"][-1] < history["loss"][0]
    assert history["accuracy"][-1] > 0.8 and history["val_accuracy"][-1] > 0.7


def test_fit_is_reproducible_for_a_seed():
    x, y = blobs()
    runs = []
    for _ in range(2):
        m = net(seed=1, dropout=True)   # unseeded Dropout: fit seeds it
        h = cconv.fit(m, x, y, epochs=2, batch_size=10, seed=3, progress=False,
                      validation_split=0.2)
        runs.append((h["loss"], h["val_loss"], [a.copy() for _, a in m.named_parameters()]))
    assert runs[0][0] == runs[1][0] and runs[0][1] == runs[1][1]
    for a, b in zip(runs[0][2], runs[1][2]):
        np.testing.assert_array_equal(a, b)
    other = cconv.fit(net(seed=1, dropout=True), x, y, epochs=2, batch_size=10, seed=4,
                      progress=False, validation_split=0.2)
    assert other["loss"] != runs[0][0]


def test_fit_builds_unbuilt_net_and_uses_optimizer_and_scheduler():
    x, y = blobs(40)
    m = Sequential(Flatten(), Linear(32, 3))
    cconv.fit(m, x, y, epochs=1, optimizer="sgd", progress=False)   # by registered name
    assert m.built
    opt = SGD(m, lr=0.1)
    history = cconv.fit(m, x, y, epochs=3, optimizer=opt, scheduler=StepLR(opt, 1, 0.5),
                        progress=False)
    assert history["lr"] == [0.1, 0.05, 0.025]
    assert opt.param_groups[0]["lr"] == 0.0125


def test_validation_data_callbacks_and_errors():
    x, y = blobs(60)
    calls = []

    def stop_after_two(epoch, logs):
        calls.append((epoch, logs["val_accuracy"]))
        return epoch == 2

    h = cconv.fit(net(), x, y, epochs=10, validation_data=(x[:10], y[:10]),
                  callbacks=[stop_after_two], progress=False)
    assert len(h["loss"]) == 2 and [c[0] for c in calls] == [1, 2]
    with pytest.raises(ValueError, match="not both"):
        cconv.fit(net(), x, y, validation_data=(x, y), validation_split=0.1, progress=False)
    with pytest.raises(ValueError, match="samples"):
        cconv.fit(net(), x, y[:5], progress=False)
    with pytest.raises(ValueError, match="unknown loss"):
        cconv.fit(net(), x, y, loss="nope", progress=False)


def test_mse_regression_has_no_accuracy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 3)).astype(np.float32)
    t = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32))
    m = Sequential(Linear(3, 1)).build((3,))
    h = cconv.fit(m, x, t, epochs=30, loss="mse", optimizer=SGD(m, lr=0.1), progress=False)
    assert h["accuracy"][-1] is None and h["loss"][-1] < 0.01
    assert cconv.evaluate(m, x, t, loss="mse")["accuracy"] is None


def test_evaluate_and_predict_batching():
    x, y = blobs(50)
    m = net()
    full = m(x)
    np.testing.assert_allclose(cconv.predict(m, x, batch_size=7), full, rtol=1e-5, atol=1e-6)
    r = cconv.evaluate(m, x, y, batch_size=7)
    assert r["accuracy"] == np.mean(full.argmax(1) == y)
    from cconv.nn import softmax_cross_entropy
    assert r["loss"] == pytest.approx(softmax_cross_entropy(full, y)[0], rel=1e-5)


def test_progress_output():
    stream = stdio.StringIO()
    bar = _Progress(True, stream)
    bar.end_epoch(1, 2, {"loss": 0.5, "accuracy": 0.75, "val_loss": 0.6,
                         "val_accuracy": 0.5, "time": 0.1})
    text = stream.getvalue()
    assert "epoch 1/2" in text and "acc 0.7500" in text and "val_loss 0.6000" in text
    assert "~0s left" in text                       # one epoch of 0.1 s to go
    bar.end_epoch(2, 2, {"loss": 0.4, "accuracy": 0.8, "val_loss": None, "time": 0.3})
    assert "left" not in stream.getvalue().splitlines()[-1]


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """A digits model trained for 3 epochs, saved: (result, path)."""
    pytest.importorskip("sklearn")
    from cconv.examples import digits

    path = tmp_path_factory.mktemp("digits") / "d.safetensors"
    # One kernel thread: the subject is accuracy, and on a busy 2-core machine two
    # thread pools (the kernels' OpenMP, numpy's BLAS) make the time erratic.
    result = digits.train(epochs=3, out=str(path), progress=False, threads=1,
                          log=lambda *a: None)
    return result, path


def test_digits_short_fit_reaches_decent_accuracy(digits_model):
    from cconv.examples import digits

    result, path = digits_model
    assert result["test_accuracy"] > 0.9
    back = cconv.load(path)
    _, _, xt, yt = digits.load_data()
    assert cconv.evaluate(back, xt, yt)["accuracy"] == result["test_accuracy"]


def test_predict_command(digits_model, tmp_path, capsys):
    from cconv import cli_train
    from cconv.examples import digits

    model = digits_model[1]
    raw = digits._load_digits()
    np.save(tmp_path / "imgs.npy", raw.images[:5])
    assert cli_train.main(["predict", str(model), str(tmp_path / "imgs.npy")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5 and lines[0].startswith("0: ")
    assert cli_train.main(["predict", str(model), "--digits", "0", "1", "2"]) == 0
    assert "accuracy" in capsys.readouterr().out
    np.save(tmp_path / "bad.npy", np.zeros((3, 7)))
    with pytest.raises(SystemExit, match="does not hold whole images"):
        cli_train.main(["predict", str(model), str(tmp_path / "bad.npy")])
    with pytest.raises(SystemExit, match="not-there"):
        cli_train.main(["predict", str(tmp_path / "not-there.safetensors"), "--digits", "0"])
