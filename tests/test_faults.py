"""Faults: interrupted saves keep the previous file; training resumes bit-identically."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import cconv
from cconv import io as cio
from cconv import nn
from cconv.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def _net(seed=0, width=8):
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.25),
                         nn.Linear(4 * 4 * 4, width), nn.ReLU(),
                         nn.Linear(width, 3)).build((1, 8, 8), seed=seed)


def _same_weights(a, b):
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    return pa.keys() == pb.keys() and all(np.array_equal(pa[k], pb[k]) for k in pa)


@pytest.mark.parametrize("trial", range(12))
def test_save_failing_at_a_random_offset_keeps_the_previous_file(tmp_path, monkeypatch, trial):
    path = tmp_path / "model.safetensors"
    old = _net(0)
    cio.save(old, path)
    before = path.read_bytes()
    new = _net(1)
    size = len(before)
    rng = np.random.default_rng(trial)
    cut = int(rng.integers(0, size))
    error = [OSError(28, "No space left on device"), KeyboardInterrupt(), MemoryError()][trial % 3]

    def failing_write(f, data):
        f.write(bytes(memoryview(data)[:cut]))   # part of the file reaches the disk
        raise error

    monkeypatch.setattr(cio, "_write_all", failing_write)
    with pytest.raises(type(error)):
        cio.save(new, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert _same_weights(cio.load(path), old)
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors"], "a temporary file was left"


def test_save_failing_at_fsync_or_rename_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    cio.save(_net(0), path)
    before = path.read_bytes()
    for target in ("fsync", "replace"):
        def boom(*args, **kwargs):
            raise OSError(5, "Input/output error")
        with monkeypatch.context() as m:
            m.setattr(cio.os, target, boom)
            with pytest.raises(OSError):
                cio.save(_net(1), path)
        assert path.read_bytes() == before
        assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]


_SAVER = textwrap.dedent("""
    import sys, numpy as np, cconv
    from cconv import nn
    path = sys.argv[1]
    nets = []
    for k in range(2):   # two versions, ~8 MB each: a save takes a while
        net = nn.Sequential(nn.Linear(1024, 2048)).build((1024,), seed=k)
        net[0].params["bias"][:] = k
        nets.append(net)
    cconv.save(nets[0], path)
    print("ready", flush=True)
    i = 0
    while True:
        cconv.save(nets[i % 2], path)
        i += 1
""")


def test_killing_a_process_mid_save_leaves_a_loadable_file(tmp_path):
    path = tmp_path / "m.safetensors"
    script = tmp_path / "saver.py"
    script.write_text(_SAVER)
    rng = np.random.default_rng(0)
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, str(script), str(path)],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(float(rng.uniform(0.05, 0.4)))   # somewhere in a save
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        net = cio.load(path)   # whole: one version or the other
        bias = net[0].params["bias"]
        assert bias[0] in (0.0, 1.0) and np.all(bias == bias[0])
    leftovers = [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    # a killed process cannot clean up its temporary file; it never replaces the model
    assert all(f.startswith(".m.safetensors.") for f in leftovers)


# ---------------------------------------------------------------- resume

def _data():
    rng = np.random.default_rng(7)
    return rng.standard_normal((48, 1, 8, 8)).astype(np.float32), rng.integers(0, 3, 48)


def _fit(net, epochs, checkpoint=None, resume=False, callbacks=None):
    x, y = _data()
    opt = cconv.optim.Adam(net, lr=1e-2)
    sched = cconv.optim.StepLR(opt, step_size=2, gamma=0.5)
    return cconv.fit(net, x, y, epochs=epochs, batch_size=16, optimizer=opt, scheduler=sched,
                     seed=5, progress=False, validation_split=0.25, checkpoint=checkpoint,
                     resume=resume, callbacks=callbacks)


def test_resumed_training_reaches_the_same_weights_bit_for_bit(tmp_path):
    straight = _net(0)
    full_history = _fit(straight, 5)

    ckpt = tmp_path / "run.ckpt"

    class Crash(Exception):
        pass

    def crash_after_3(epoch, logs):
        if epoch == 3:
            raise Crash
    first = _net(0)
    with pytest.raises(Crash):
        _fit(first, 5, checkpoint=ckpt, callbacks=[crash_after_3])
    assert not _same_weights(first, straight)

    resumed = _net(0)   # a new process would build the net and optimizer again
    history = _fit(resumed, 5, checkpoint=ckpt, resume=True)
    assert _same_weights(resumed, straight)
    assert history["loss"] == full_history["loss"] and history["lr"] == full_history["lr"]


def test_resume_without_a_checkpoint_starts_from_scratch(tmp_path):
    a, b = _net(0), _net(0)
    _fit(a, 2)
    _fit(b, 2, checkpoint=tmp_path / "none.ckpt", resume=True)
    assert _same_weights(a, b) and (tmp_path / "none.ckpt").exists()


def test_checkpoint_of_another_net_or_optimizer_is_refused_unchanged(tmp_path):
    ckpt = tmp_path / "c.ckpt"
    net = _net(0)
    opt = cconv.optim.Adam(net, lr=1e-2)
    save_checkpoint(ckpt, net, opt, epoch=1)
    other = _net(0, width=6)
    before = {k: v.copy() for k, v in other.named_parameters()}
    with pytest.raises(CheckpointError, match="c.ckpt"):
        load_checkpoint(ckpt, other, cconv.optim.Adam(other, lr=1e-2))
    assert all(np.array_equal(v, before[k]) for k, v in other.named_parameters())
    with pytest.raises(CheckpointError, match="SGD"):
        load_checkpoint(ckpt, _net(0), cconv.optim.SGD(_net(0), lr=0.1))
    cio.save(net, tmp_path / "plain.safetensors")
    with pytest.raises(CheckpointError, match="not a cconv training checkpoint"):
        load_checkpoint(tmp_path / "plain.safetensors", net, opt)
