"""cconv-dask (plugins/cconv-dask): predict and sweep on Dask, locally and on a LocalCluster.

The plugin is imported from its installed package when there is one, else
from plugins/cconv-dask/src; the worker processes get the same directory on
PYTHONPATH, so the tests run in a fresh CI venv without installing it (the
last test checks that it builds as a package).
"""
import logging
import os
import re
import signal
import sys
import time
import zipfile

import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
dask_bag = pytest.importorskip("dask.bag")
distributed = pytest.importorskip("distributed")

from conftest import build_wheel

import cconv
from cconv import nn

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN_DIR = os.path.join(REPO, "plugins", "cconv-dask")

try:
    import cconv_dask
except ImportError:
    sys.path.insert(0, os.path.join(PLUGIN_DIR, "src"))
    import cconv_dask
from cconv_dask import _cluster, _model

# Functions defined here (builders, slow steps) travel to the worker processes
# by value: those processes cannot import this test module.
cloudpickle = pytest.importorskip("cloudpickle")
cloudpickle.register_pickle_by_value(sys.modules[__name__])

PLUGIN_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(cconv_dask.__file__)))


def make_net(input_shape=(3, 16, 16), seed=0, hidden=8):
    c = input_shape[0]
    return nn.Sequential(
        nn.Conv2d(c, hidden, 3, padding="same"), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(hidden * (input_shape[1] // 2) * (input_shape[2] // 2), 10),
    ).build(input_shape, seed=seed)


def batched_reference(net, x, batch_size):
    """Single-process cconv: net(x) batch by batch, as cconv.predict does."""
    return np.concatenate([net(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def start_cluster():
    """2 worker processes x 1 thread on loopback; workers import the plugin from PLUGIN_PARENT."""
    old = os.environ.get("PYTHONPATH")
    # spawned workers read PYTHONPATH at start-up, so they see the same plugin source
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (PLUGIN_PARENT, old) if p)
    try:
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", memory_limit=0,
            dashboard_address=None, silence_logs=logging.ERROR)
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old
    return cluster, distributed.Client(cluster, set_as_default=False)


@pytest.fixture(scope="module")
def client():
    cluster, client = start_cluster()
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def compute(client, collection):
    """The collection's value, computed on client (the tests' client is not the default)."""
    return client.compute(collection).result()


@pytest.fixture
def data(rng):
    return rng.standard_normal((53, 3, 16, 16)).astype(np.float32)


# ---------------------------------------------------------------- predict

def test_predict_equals_single_process_bit_for_bit(client, data):
    net = make_net()
    x = da.from_array(data, chunks=((7, 1, 32, 13), 3, 16, 16))
    out = cconv_dask.predict(net, x, batch_size=8, client=client)
    assert isinstance(out, da.Array) and out.shape == (53, 10) and out.dtype == np.float32
    got = compute(client, out)
    assert np.array_equal(got, cconv.predict(net, data, batch_size=8))
    assert np.array_equal(got, batched_reference(net, data, 8))


def test_one_chunk_one_batch_equals_net_of_x(client, data):
    net = make_net()
    x = da.from_array(data, chunks=(53, 3, 16, 16))
    got = compute(client, cconv_dask.predict(net, x, batch_size=64, client=client))
    assert np.array_equal(got, net(data))


@pytest.mark.parametrize("chunks, batch_size, kept", [
    ((16, 8, 24, 5), 8, True),        # uneven, on batch boundaries: kept as they are
    ((1, 9, 2, 30, 11), 1, True),     # batch 1: every boundary is one
    ((3, 17, 4, 29), 4, False),       # off the boundaries: rechunked, order kept
])
def test_order_kept_across_uneven_chunks(client, data, chunks, batch_size, kept):
    net = make_net()
    x = da.from_array(data, chunks=(chunks, 3, 16, 16))
    out = cconv_dask.predict(net, x, batch_size=batch_size, client=client)
    assert (out.chunks[0] == chunks) is kept
    assert all(c % batch_size == 0 for c in out.chunks[0][:-1])
    got = compute(client, out)
    ref = batched_reference(net, data, batch_size)
    assert np.array_equal(got, ref)
    # each row is its own sample's output: a permutation would not match
    assert len({row.tobytes() for row in got}) == len(data)


def test_model_is_loaded_once_per_worker(client, data, tmp_path):
    net = make_net(hidden=16)
    path = tmp_path / "m.safetensors"
    cconv.save(net, path)
    before = client.run(_model.load_count)
    x = da.from_array(data, chunks=(4, 3, 16, 16))   # 14 tasks
    got = compute(client, cconv_dask.predict(str(path), x, batch_size=4, client=client))
    after = client.run(_model.load_count)
    loads = {w: after[w] - before.get(w, 0) for w in after}
    assert all(n <= 1 for n in loads.values()), loads        # 1 thread per worker
    assert sum(loads.values()) >= 1
    assert np.array_equal(got, cconv.predict(net, data, batch_size=4))


def test_worker_thread_budget(client):
    plan = _cluster.plan_threads(client)
    cpus = _cluster._available_cpus()
    assert plan == {"127.0.0.1": max(1, cpus // 2)}   # 2 workers x 1 thread share the host

    def seen_by_task(plan):
        with _cluster.cconv_threads(_cluster.threads_for_task(plan)):
            return cconv.get_num_threads()

    assert client.submit(seen_by_task, plan, pure=False).result() == max(1, cpus // 2)
    assert client.submit(seen_by_task, {"*": 3}, pure=False).result() == 3
    with pytest.raises(ValueError, match="threads_per_task"):
        _cluster.plan_threads(client, 0)


def test_cconv_threads_guard_restores_after_overlapping_tasks():
    before = cconv.get_num_threads()
    with _cluster.cconv_threads(1):
        with _cluster.cconv_threads(1):
            assert cconv.get_num_threads() == 1
        assert cconv.get_num_threads() == 1   # the other task is still running
    assert cconv.get_num_threads() == before


def write_images(tmp_path, rng):
    from PIL import Image

    paths = []
    for i, (size, mode) in enumerate([((16, 16), "RGB"), ((20, 12), "RGB"), ((16, 16), "L"),
                                      ((9, 31), "RGBA"), ((16, 16), "RGB")] * 2):
        shape = (size[1], size[0], len(mode)) if len(mode) > 1 else (size[1], size[0])
        img = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)
        path = tmp_path / f"img{i}.png"
        img.save(path)
        paths.append(str(path))
    return paths


def pillow_reference(paths, mode, size):
    from PIL import Image

    out = []
    for p in paths:
        img = Image.open(p).convert(mode)
        if img.size != size:
            img = img.resize(size, Image.BILINEAR)
        a = np.asarray(img, dtype=np.float32) / np.float32(255)
        out.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    return np.stack(out)


@pytest.mark.parametrize("channels", [3, 1])
def test_predict_image_files(client, tmp_path, rng, channels):
    pytest.importorskip("PIL")
    paths = write_images(tmp_path, rng)
    net = make_net((channels, 16, 16))
    x = pillow_reference(paths, "RGB" if channels == 3 else "L", (16, 16))
    ref = batched_reference(net, x, 4)
    got = cconv_dask.predict(net, paths, batch_size=4, client=client)
    assert got.shape == (len(paths), 10)
    assert np.array_equal(compute(client, got), ref)
    bag = dask_bag.from_sequence(paths, partition_size=4)   # partitions of 4, 4, 2
    assert np.array_equal(
        compute(client, cconv_dask.predict(net, bag, batch_size=4, client=client)), ref)


def test_unreadable_image_names_the_file(client, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(ValueError, match="notes.png"):
        compute(client, cconv_dask.predict(make_net(), [str(bad)], client=client))


def test_progress_uses_dask_progress_bar(client, data, capsys):
    x = da.from_array(data, chunks=(16, 3, 16, 16))
    out = cconv_dask.predict(make_net(), x, batch_size=16, client=client, progress=True)
    assert "100%" in capsys.readouterr().out          # distributed's text progress bar
    assert np.array_equal(compute(client, out), cconv.predict(make_net(), data, batch_size=16))


def test_scheduler_address_argument(client, data):
    address = client.scheduler.address
    try:
        x = da.from_array(data, chunks=(16, 3, 16, 16))
        out = cconv_dask.predict(make_net(), x, batch_size=16, address=address)
        assert np.array_equal(out.compute(), cconv.predict(make_net(), data, batch_size=16))
        assert distributed.default_client().scheduler.address == address
    finally:
        try:
            distributed.default_client().close()
        except ValueError:
            pass


# ---------------------------------------------------------------- sweep

def make_builder(input_shape=(1, 8, 8)):
    def build(config):
        if config.get("explode"):
            raise RuntimeError(f"cannot build config {config}")
        return make_net(input_shape, seed=config.get("init", 0), hidden=4)
    return build


def toy_problem(rng, n=96):
    x = rng.standard_normal((n, 1, 8, 8)).astype(np.float32)
    y = (x[:, 0, :4].mean(axis=(1, 2)) > 0).astype(np.int64) + 2 * (x[:, 0, :, :4].mean(
        axis=(1, 2)) > 0)
    return x[:64], y[:64], (x[64:], y[64:])


def test_sweep_reports_a_failing_config_and_keeps_the_others(client, rng):
    x, y, val = toy_problem(rng)
    configs = [{"lr": 1e-2}, {"lr": 1e-2, "explode": True}, {"lr": 1e-4, "epochs": 1},
               {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9}]
    result = cconv_dask.sweep(make_builder(), configs, x, y, validation_data=val, epochs=3,
                              batch_size=16, client=client, progress=False)
    assert [t.index for t in result.trials] == [0, 1, 2, 3]
    failed = result.trials[1]
    assert not failed.ok and failed.metrics is None
    assert "RuntimeError" in failed.error and "cannot build config" in failed.error
    assert "build" in failed.traceback
    ok = [t for t in result.trials if t.ok]
    assert [t.index for t in ok] == [0, 2, 3] and result.failed == [failed], result.table()
    assert len(result.trials[2].history["loss"]) == 1       # the config's own epochs
    assert len(result.trials[0].history["loss"]) == 3
    best = min(ok, key=lambda t: t.metrics["val_loss"])
    assert result.metric == "val_loss" and result.mode == "min"
    assert result.best is best
    assert cconv.evaluate(result.best_model, *val)["loss"] == pytest.approx(
        best.metrics["val_loss"], rel=1e-6)
    assert "FAILED RuntimeError" in result.table()


def test_sweep_on_dask_local_scheduler_with_progress(rng, capsys):
    x, y, val = toy_problem(rng)
    result = cconv_dask.sweep(make_builder(), [{"lr": 3e-3}, {"lr": 1e-2}], x, y,
                              validation_data=val, epochs=2, batch_size=16,
                              metric="val_accuracy")
    assert result.mode == "max" and all(t.ok for t in result.trials)
    accs = [t.metrics["val_accuracy"] for t in result.trials]
    assert result.best.metrics["val_accuracy"] == max(accs)
    assert "100% Completed" in capsys.readouterr().out   # dask.diagnostics.ProgressBar
    # the same configuration trained in this process gives the same model
    net = make_builder()(dict(result.best.config))
    cconv.fit(net, x, y, epochs=2, batch_size=16, validation_data=val, progress=False,
              optimizer=cconv.optim.Adam(net, lr=result.best.config["lr"]))
    for (name, a), (_, b) in zip(net.named_parameters(),
                                 result.best_model.named_parameters()):
        assert np.array_equal(a, b), name


def test_sweep_where_every_config_fails(rng):
    x, y, _ = toy_problem(rng)
    result = cconv_dask.sweep(make_builder(), [{"explode": True}], x, y, progress=False)
    assert result.best is None and result.best_model is None
    assert "RuntimeError" in result.trials[0].error


def test_worker_killed_mid_job_still_finishes(client, data):
    """Runs last of the cluster tests: it kills one of the two workers (its nanny restarts it)."""
    def slow(block):   # a slow upstream step, so the job is running when the kill comes
        time.sleep(0.2)
        return block

    pids = client.run(os.getpid)
    victim = min(pids.values())
    x, net = data[:48], make_net()
    source = da.from_array(x, chunks=(3, 3, 16, 16)).map_blocks(slow, dtype=x.dtype)
    future = client.compute(cconv_dask.predict(net, source, batch_size=3, client=client))
    deadline = time.monotonic() + 60
    while not any("cconv-predict" in str(key)   # the first chunks are done
                  for keys in client.has_what().values() for key in keys):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert not future.done()
    os.kill(victim, signal.SIGKILL)
    got = future.result(timeout=120)
    assert np.array_equal(got, cconv.predict(net, x, batch_size=3))
    assert victim not in client.run(os.getpid).values()


# ---------------------------------------------------------------- local scheduler, bad input

def test_predict_on_dask_local_scheduler(data):
    net = make_net()
    got = cconv_dask.predict(net, data, batch_size=8, chunk_size=16)   # numpy in
    assert got.chunks[0] == (16, 16, 16, 5)
    assert np.array_equal(got.compute(), cconv.predict(net, data, batch_size=8))
    empty = cconv_dask.predict(net, [], batch_size=8)
    assert empty.shape == (0, 10) and empty.compute().shape == (0, 10)


def test_image_transform_on_local_scheduler(tmp_path, rng):
    pytest.importorskip("PIL")
    paths = write_images(tmp_path, rng)[:5]
    net = make_net()
    x = pillow_reference(paths, "RGB", (16, 16))
    got = cconv_dask.predict(net, paths, batch_size=2, transform=lambda im: 2 * im - 1)
    assert got.chunks[0] == (2, 2, 1)
    assert np.array_equal(got.compute(), cconv.predict(net, 2 * x - 1, batch_size=2))
    with pytest.raises(ValueError, match="transform returned shape"):
        cconv_dask.predict(net, paths, transform=lambda im: im[:1]).compute()
    with pytest.raises(ValueError, match="transform applies to image files"):
        cconv_dask.predict(net, da.zeros((4, 3, 16, 16), chunks=2), transform=abs)
    with pytest.raises(ValueError, match="C 1 \\(grey\\) or 3 \\(RGB\\)"):
        cconv_dask.predict(make_net((2, 16, 16)), paths).compute()


def test_bad_input_is_refused_with_names(data, tmp_path):
    net = make_net()
    with pytest.raises(ValueError, match=r"data has shape \(53, 3, 8, 8\).*\(3, 16, 16\)"):
        cconv_dask.predict(net, da.zeros((53, 3, 8, 8), chunks=8))
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        cconv_dask.predict(net, data, batch_size=0)
    with pytest.raises(TypeError, match="model must be a cconv net"):
        cconv_dask.predict(object(), data)
    with pytest.raises(FileNotFoundError, match="no saved model"):
        cconv_dask.predict(str(tmp_path / "missing.safetensors"), data)
    with pytest.raises(TypeError, match="data must be a dask array"):
        cconv_dask.predict(net, {"x": data})
    with pytest.raises(TypeError, match=r"data: a list must hold image file paths; found int"):
        cconv_dask.predict(net, [1, 2])
    with pytest.raises(ValueError, match="client or address, not both"):
        cconv_dask.predict(net, data, client=object(), address="tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="address must be a scheduler address"):
        cconv_dask.predict(net, data, address="")
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        x = da.from_array(data, chunks=(8, 3, 16, 16))
        cconv_dask.predict(net, x[x[:, 0, 0, 0] > 0])
    x, y = data[:, :1, :8, :8], np.zeros(53, dtype=np.int64)
    with pytest.raises(ValueError, match="configs is empty"):
        cconv_dask.sweep(make_builder(), [], x, y)
    with pytest.raises(TypeError, match=r"configs\[1\] must be a dict"):
        cconv_dask.sweep(make_builder(), [{}, 0.1], x, y)
    with pytest.raises(ValueError, match="x has 53 samples but y has 3"):
        cconv_dask.sweep(make_builder(), [{}], x, y[:3])
    with pytest.raises(ValueError, match="mode must be"):
        cconv_dask.sweep(make_builder(), [{}], x, y, mode="lowest")


@pytest.mark.slow  # pip builds in an isolated environment: seconds, and not core
def test_plugin_builds_as_its_own_package(tmp_path):
    """plugins/cconv-dask builds alone, into a temporary folder (nothing installed, no
    build files left in the repo); the wheel declares its Dask dependency."""
    before = sorted(os.listdir(PLUGIN_DIR))
    wheel = build_wheel(PLUGIN_DIR, tmp_path / "dist")
    assert sorted(os.listdir(PLUGIN_DIR)) == before
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = zf.read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "cconv_dask/predict.py" in names and "cconv_dask/sweep.py" in names
    assert re.search(r"Requires-Dist: dask\[array, ?distributed\]", meta)
    assert "Requires-Dist: cconv" in meta
