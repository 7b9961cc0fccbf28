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
    leftovers = [f for f in os.listdir(tmp_path) if ".cconv-tmp-" in f]
    # a killed process cannot clean up its temporary file; it never replaces the model,
    # and the next save to the path removes it (each saver removed its dead predecessors')
    assert len(leftovers) <= 1 and all(f.startswith(".m.safetensors.cconv-tmp-")
                                       for f in leftovers), leftovers
    cio.save(cio.load(path), path)
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors", "saver.py"]


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.skipif(os.name != "posix", reason="stale temp files are found by pid on POSIX")
def test_next_save_removes_temp_files_of_killed_saves(tmp_path):
    path = tmp_path / "m.safetensors"
    dead = _dead_pid()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        orphans = [f".m.safetensors.cconv-tmp-{dead}-a1b2c3", f".m.safetensors.cconv-tmp-{dead}-zz_9"]
        keep = [f".m.safetensors.cconv-tmp-{alive.pid}-x7y8z9",      # still writing
                f".m.safetensors.cconv-tmp-{os.getpid()}-q1w2e3",    # another thread of ours
                f".other.safetensors.cconv-tmp-{dead}-a1b2c3",       # another target
                f".m.safetensors.cconv-tmp-{dead}-a1b2c3.bak",       # not our name
                "m.safetensors.cconv-tmp-1-abc",                     # not hidden: not ours
                f".m.safetensors.{dead}.tmp"]                         # the old naming: left alone
        for name in orphans + keep:
            (tmp_path / name).write_bytes(b"x" * 100)
        cio.save(_net(0), path)
        assert sorted(os.listdir(tmp_path)) == sorted(keep + ["m.safetensors"])
        # checkpoints share the writer
        ckpt = tmp_path / "run.ckpt"
        (tmp_path / f".run.ckpt.cconv-tmp-{dead}-k9").write_bytes(b"x")
        net = _net(0)
        save_checkpoint(ckpt, net, cconv.optim.Adam(net, lr=1e-2), epoch=1)
        assert not (tmp_path / f".run.ckpt.cconv-tmp-{dead}-k9").exists()
    finally:
        alive.kill()
        alive.wait()


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


def _snapshot(net, opt, sched, rng):
    return ({k: v.copy() for k, v in net.named_parameters()},
            {n: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in st.items()}
             for n, st in opt.state.items()},
            [dict(g) for g in opt.param_groups],
            None if sched is None else dict(sched.state_dict()),
            rng.bit_generator.state)


def _assert_unchanged(before, net, opt, sched, rng):
    after = _snapshot(net, opt, sched, rng)
    weights, state, groups, sched_state, rng_state = before
    assert after[0].keys() == weights.keys()
    assert all(np.array_equal(after[0][k], weights[k]) for k in weights), "weights changed"
    assert after[1].keys() == state.keys()
    for name, st in state.items():
        for key, value in st.items():
            assert np.array_equal(after[1][name][key], value), f"{name}.{key} changed"
    assert after[2] == groups and after[3] == sched_state and after[4] == rng_state


def _trained_checkpoint(tmp_path, sched_cls=cconv.optim.StepLR):
    """A checkpoint after 2 epochs of _net(0) with Adam and sched_cls."""
    ckpt = tmp_path / "run.ckpt"
    net = _net(0)
    opt = cconv.optim.Adam(net, lr=1e-2)
    sched = (sched_cls(opt, step_size=2) if sched_cls is cconv.optim.StepLR
             else sched_cls(opt, T_max=4))
    x, y = _data()
    cconv.fit(net, x, y, epochs=2, batch_size=16, optimizer=opt, scheduler=sched, seed=5,
              progress=False, checkpoint=ckpt)
    return ckpt


def _fresh(seed=3, width=8, opt_cls=cconv.optim.Adam, sched="step"):
    net = _net(seed, width=width)
    opt = opt_cls(net, lr=1e-2)
    x, y = _data()
    net.forward(x[:16], training=True)       # optimizer state exists: it must survive
    net.backward(np.ones((16, 3), np.float32), input_grads=False)
    opt.step()
    if sched == "step":
        sched = cconv.optim.StepLR(opt, step_size=2, gamma=0.5)
    elif sched == "cosine":
        sched = cconv.optim.CosineAnnealingLR(opt, T_max=4)
    return net, opt, sched, np.random.default_rng(11)


@pytest.mark.parametrize("case", ["scheduler_type", "architecture", "param_shapes",
                                  "param_dtype", "optimizer_type", "no_scheduler",
                                  "optimizer_state", "scheduler_state", "layer_config"])
def test_refused_resume_changes_nothing(tmp_path, case):
    """Every misfit is found before anything is written into net, optimizer,
    scheduler or random generator (the old loader copied matching weights first)."""
    ckpt = _trained_checkpoint(tmp_path)
    match = None
    if case == "scheduler_type":
        net, opt, sched, rng = _fresh(sched="cosine")
        match = "StepLR"
    elif case == "architecture":    # same parameters, another activation
        net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Tanh(),
                            nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.25),
                            nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 3)).build((1, 8, 8))
        opt = cconv.optim.Adam(net, lr=1e-2)
        sched, rng = cconv.optim.StepLR(opt, step_size=2, gamma=0.5), np.random.default_rng(1)
        match = "architecture"
    elif case == "layer_config":    # same parameters, another dropout rate
        net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                            nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.5),
                            nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 3)).build((1, 8, 8))
        opt = cconv.optim.Adam(net, lr=1e-2)
        sched, rng = cconv.optim.StepLR(opt, step_size=2, gamma=0.5), np.random.default_rng(1)
        match = "Dropout"
    elif case == "param_shapes":
        net, opt, sched, rng = _fresh(width=6)
    elif case == "param_dtype":
        net, opt, sched, rng = _fresh()
        net.astype(np.float64)
        opt = cconv.optim.Adam(net, lr=1e-2)
        sched = cconv.optim.StepLR(opt, step_size=2, gamma=0.5)
    elif case == "optimizer_type":
        net, opt, sched, rng = _fresh(opt_cls=cconv.optim.SGD)
        match = "Adam"
    elif case == "no_scheduler":
        net, opt, sched, rng = _fresh(sched=None)
        match = "scheduler"
    elif case in ("optimizer_state", "scheduler_state"):
        # a hand-edited checkpoint: the weights fit, one state entry does not
        import json

        from safetensors.numpy import load_file, save_file
        tensors = load_file(str(ckpt))
        meta = json.loads(cio.read_safetensors(ckpt)[1]["cconv_checkpoint"])
        if case == "optimizer_state":
            key = next(k for k in tensors if k.startswith("opt/") and k.endswith("exp_avg_sq"))
            tensors[key] = tensors[key][..., :1].copy()
            match = "exp_avg_sq"
        else:
            meta["scheduler"]["last_epoch"] = "two"
            match = "last_epoch"
        save_file(tensors, str(ckpt), metadata={"cconv_checkpoint": json.dumps(meta)})
        net, opt, sched, rng = _fresh()
    before = _snapshot(net, opt, sched, rng)
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(ckpt, net, opt, sched, rng)
    assert "run.ckpt" in str(info.value)
    _assert_unchanged(before, net, opt, sched, rng)
    # and through fit(resume=True): refused before the first epoch
    x, y = _data()
    before = _snapshot(net, opt, sched, rng)
    with pytest.raises(CheckpointError):
        cconv.fit(net, x, y, epochs=3, batch_size=16, optimizer=opt, scheduler=sched,
                  progress=False, checkpoint=ckpt, resume=True)
    _assert_unchanged(before, net, opt, sched, rng)


def test_step_lr_checkpoint_refused_by_cosine_scheduler(tmp_path):
    ckpt = _trained_checkpoint(tmp_path)
    net = _net(0)
    opt = cconv.optim.Adam(net, lr=1e-2)
    x, y = _data()
    with pytest.raises(CheckpointError, match="StepLR.*CosineAnnealingLR"):
        cconv.fit(net, x, y, epochs=4, batch_size=16, optimizer=opt,
                  scheduler=cconv.optim.CosineAnnealingLR(opt, T_max=4), seed=5,
                  progress=False, checkpoint=ckpt, resume=True)
    # the matching scheduler resumes
    net = _net(0)
    opt = cconv.optim.Adam(net, lr=1e-2)
    hist = cconv.fit(net, x, y, epochs=3, batch_size=16, optimizer=opt,
                     scheduler=cconv.optim.StepLR(opt, step_size=2), seed=5,
                     progress=False, checkpoint=ckpt, resume=True)
    assert len(hist["loss"]) == 3
