"""No leaks: resident memory stays flat over many calls (Linux: /proc/self/statm)."""
import gc
import os

import numpy as np
import pytest

import cconv
from cconv import nn

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/statm"),
                                reason="reads RSS from /proc/self/statm (Linux)")

LEAK_BOUND = 4 * 2**20   # bytes of RSS growth allowed after the warm-up
CALLS = 10_000


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _growth(step, calls, warmup=500):
    for _ in range(warmup):
        step()
    gc.collect()
    before = rss()
    for _ in range(calls):
        step()
    gc.collect()
    return rss() - before


def _small_net():
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(8, 3)).build((1, 4, 4), seed=0)


def test_rss_is_flat_over_10000_training_steps():
    net = _small_net()
    opt = cconv.optim.Adam(net, lr=1e-3)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 4, 4)).astype(np.float32)
    y = rng.integers(0, 3, 2)

    def step():
        out = net.forward(x, training=True)
        _, grad = nn.softmax_cross_entropy(out, y)
        net.backward(grad)
        opt.step()

    grown = _growth(step, CALLS)
    assert grown < LEAK_BOUND, f"RSS grew by {grown / 2**20:.1f} MiB over {CALLS} steps"


def test_rss_is_flat_over_10000_inference_calls_of_several_shapes():
    net = _small_net()
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((b, 1, 4, 4)).astype(np.float32) for b in range(1, 12)]
    i = [0]

    def step():   # more shapes than the planned-runner cache keeps
        net(xs[i[0] % len(xs)])
        i[0] += 1

    grown = _growth(step, CALLS)
    assert grown < LEAK_BOUND, f"RSS grew by {grown / 2**20:.1f} MiB over {CALLS} calls"


def test_rss_is_flat_over_repeated_save_and_load(tmp_path):
    net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)).build((64,))
    path = tmp_path / "m.safetensors"

    def step():
        cconv.save(net, path)
        cconv.load(path)

    grown = _growth(step, 200, warmup=20)
    assert grown < LEAK_BOUND, f"RSS grew by {grown / 2**20:.1f} MiB over 200 save/load"


def test_rss_is_flat_over_bad_calls():
    """Errors raised from inside the kernels' argument checks release what they took."""
    x, w = np.ones((1, 2, 5, 5), np.float32), np.ones((3, 3, 3, 3), np.float32)

    def step():
        try:
            cconv.ops.conv2d(x, w)   # channel mismatch
        except ValueError:
            pass

    grown = _growth(step, CALLS)
    assert grown < LEAK_BOUND, f"RSS grew by {grown / 2**20:.1f} MiB over {CALLS} bad calls"
