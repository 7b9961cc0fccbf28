"""Thread-count API and determinism of the kernels across thread counts."""
import numpy as np
import pytest

import cconv
from conftest import run_python

from cconv import ops


def test_openmp_enabled_is_bool():
    assert isinstance(cconv.openmp_enabled(), bool)


def test_default_thread_count_is_positive_int():
    n = cconv.get_num_threads()
    assert isinstance(n, int) and n >= 1


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_set_and_get(n):
    cconv.set_num_threads(n)
    assert cconv.get_num_threads() == n


@pytest.mark.parametrize("bad", [0, -1, -100])
def test_set_num_threads_rejects_below_one(bad):
    before = cconv.get_num_threads()
    with pytest.raises(ValueError):
        cconv.set_num_threads(bad)
    assert cconv.get_num_threads() == before


@pytest.mark.parametrize("bad", [1.5, "2", None])
def test_set_num_threads_rejects_non_integers(bad):
    with pytest.raises((ValueError, TypeError)):
        cconv.set_num_threads(bad)


def test_threads_context_restores():
    cconv.set_num_threads(2)
    with cconv.threads(1):
        assert cconv.get_num_threads() == 1
        with cconv.threads(3):
            assert cconv.get_num_threads() == 3
        assert cconv.get_num_threads() == 1
    assert cconv.get_num_threads() == 2


def test_threads_context_restores_on_exception():
    cconv.set_num_threads(2)
    with pytest.raises(KeyError):
        with cconv.threads(1):
            assert cconv.get_num_threads() == 1
            raise KeyError("boom")
    assert cconv.get_num_threads() == 2


def test_threads_context_rejects_bad_count():
    cconv.set_num_threads(2)
    with pytest.raises(ValueError):
        with cconv.threads(0):
            pass
    assert cconv.get_num_threads() == 2


def test_omp_num_threads_environment():
    proc = run_python("import cconv; print(cconv.get_num_threads())",
                      env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1"


def test_omp_num_threads_environment_after_a_kernel_call():
    code = ("import numpy as np, cconv\n"
            "from cconv import ops\n"
            "ops.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)))\n"
            "print(cconv.get_num_threads())")
    proc = run_python(code, env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1"


# ---------------------------------------------------------------- same results at 1 and 2

def _at(n, f):
    with cconv.threads(n):
        return f()


def _same(a, b, dtype):
    if isinstance(a, tuple):
        for x, y in zip(a, b):
            _same(x, y, dtype)
        return
    assert a.dtype == b.dtype and a.shape == b.shape
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, np.abs(b).max()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_results_do_not_depend_on_threads(rng, dtype):
    x = rng.standard_normal((4, 16, 24, 24)).astype(dtype)
    w = rng.standard_normal((32, 16, 3, 3)).astype(dtype)
    b = rng.standard_normal(32).astype(dtype)
    wd = rng.standard_normal((32, 1, 3, 3)).astype(dtype)
    cases = [
        lambda: ops.conv2d(x, w, b, padding=1),
        lambda: ops.conv2d(x, w, stride=2, padding="same"),
        lambda: ops.conv2d(x, wd, groups=16, padding=1),
        lambda: ops.conv2d_backward(np.ones((4, 32, 24, 24), dtype), x, w, padding=1),
        lambda: ops.conv2d_backward(np.ones((4, 32, 24, 24), dtype), x, wd, padding=1,
                                    groups=16),
        lambda: ops.conv1d(x[:, :, 0], w[:, :, 0], padding=1),
    ]
    for f in cases:
        _same(_at(2, f), _at(1, f), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pool_and_gemm_results_do_not_depend_on_threads(rng, dtype):
    x = rng.standard_normal((4, 32, 24, 24)).astype(dtype)
    g = rng.standard_normal((4, 32, 12, 12)).astype(dtype)
    for f in [lambda: ops.max_pool2d(x, 3, 2, 1, return_indices=True),
              lambda: ops.max_pool2d_backward(g, x, 3, 2, 1),
              lambda: ops.avg_pool2d(x, 3, 2, 1),
              lambda: ops.avg_pool2d_backward(g, x.shape, 3, 2, 1),
              lambda: ops.global_avg_pool2d(x)]:
        r1, r2 = _at(1, f), _at(2, f)
        if isinstance(r1, tuple):
            np.testing.assert_array_equal(r1[0], r2[0])
            np.testing.assert_array_equal(r1[1], r2[1])
        else:
            _same(r2, r1, dtype)
    a = rng.standard_normal((200, 150)).astype(dtype)
    bm = rng.standard_normal((150, 170)).astype(dtype)
    _same(_at(2, lambda: ops.gemm(a, bm)), _at(1, lambda: ops.gemm(a, bm)), dtype)


def test_more_threads_than_work(rng):
    """Far more threads than rows or channels still gives the right answer."""
    x = rng.standard_normal((1, 1, 3, 3))
    w = rng.standard_normal((1, 1, 2, 2))
    ref = _at(1, lambda: ops.conv2d(x, w))
    _same(_at(16, lambda: ops.conv2d(x, w)), ref, np.float64)


def _openmp_env_in_subprocess(env_extra):
    """(OMP_WAIT_POLICY, GOMP_SPINCOUNT, kernels' work per thread) after import."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(env_extra)
    code = ("import os, cconv; from cconv import _kernels; "
            "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'), "
            "_kernels.work_per_thread())")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    policy, spin, work = out.stdout.split()
    return policy, spin, float(work)


SLEEPING, SPINNING = 1.0e6, 65536.0   # threads.c's thresholds


def test_import_bounds_openmp_spin_wait():
    """Unless the user chose, idle threads spin briefly, then sleep; kernels
    add a thread only for work worth waking a sleeping one."""
    from cconv._threads import BOUNDED_SPINCOUNT
    assert _openmp_env_in_subprocess({}) == ("None", BOUNDED_SPINCOUNT, SLEEPING)


@pytest.mark.parametrize("env, expected", [
    ({"OMP_WAIT_POLICY": "active"}, ("active", "None", SPINNING)),
    ({"OMP_WAIT_POLICY": "PASSIVE"}, ("PASSIVE", "None", SLEEPING)),
    # an explicit spin count is a choice too, and overrides the policy
    ({"GOMP_SPINCOUNT": "1000"}, ("None", "1000", SLEEPING)),
    ({"GOMP_SPINCOUNT": "300k"}, ("None", "300k", SPINNING)),
    ({"GOMP_SPINCOUNT": "infinite"}, ("None", "infinite", SPINNING)),
    ({"GOMP_SPINCOUNT": "2M", "OMP_WAIT_POLICY": "passive"}, ("passive", "2M", SPINNING)),
    ({"GOMP_SPINCOUNT": "0", "OMP_WAIT_POLICY": "active"}, ("active", "0", SLEEPING)),
    ({"GOMP_SPINCOUNT": "Infinity"}, ("None", "Infinity", SPINNING)),
    # a count the runtime rejects leaves the policy in charge
    ({"GOMP_SPINCOUNT": "lots", "OMP_WAIT_POLICY": "passive"}, ("passive", "lots", SLEEPING)),
    ({"GOMP_SPINCOUNT": "5x", "OMP_WAIT_POLICY": "active"}, ("active", "5x", SPINNING)),
])
def test_user_openmp_wait_settings_are_kept(env, expected):
    assert _openmp_env_in_subprocess(env) == expected


# ---------------------------------------------------------------- bit-identical at 1, 2, 3

# (x shape, w shape, kwargs, algorithms): every forward algorithm, and the backward
# paths they lead to (direct gradient, Winograd adjoint, im2col + GEMM, depthwise)
EXACT_LAYERS = [
    ((4, 64, 20, 20), (64, 64, 3, 3), {"padding": 1}, ["auto", "winograd", "winograd_f4"]),
    ((8, 32, 56, 56), (32, 32, 3, 3), {"padding": 1}, ["auto"]),          # Winograd adjoint
    ((3, 16, 24, 24), (32, 16, 3, 3), {"padding": 1}, ["auto", "direct", "im2col_gemm"]),
    ((2, 3, 40, 70), (64, 3, 7, 7), {"stride": 2, "padding": 3}, ["auto", "winograd_rows"]),
    ((6, 6, 12, 12), (16, 6, 5, 5), {}, ["auto"]),                        # LeNet conv2
    ((64, 1, 28, 28), (6, 1, 5, 5), {"padding": 2}, ["auto"]),            # LeNet conv1
    ((4, 16, 18, 18), (32, 1, 3, 3), {"padding": 1, "groups": 16}, ["auto", "im2col_gemm"]),
    ((2, 128, 14, 14), (256, 128, 3, 3), {"padding": 1, "stride": 2}, ["auto"]),
    ((16, 64, 9, 9), (96, 64, 1, 1), {}, ["auto"]),                       # pointwise
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layer", EXACT_LAYERS, ids=lambda c: "x".join(map(str, c[1])))
def test_conv_is_bit_identical_at_any_thread_count(rng, dtype, layer):
    """Forward, input, weight and bias gradients: the same bits at 1, 2 and 3 threads
    (reductions run over fixed chunks, summed in chunk order)."""
    xs, ws, kw, algos = layer
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    y = ops.conv2d(x, w, b, **kw)
    dy = rng.standard_normal(y.shape).astype(dtype)
    runs = {}
    for n in (1, 2, 3):
        with cconv.threads(n):
            outs = [ops.conv2d(x, w, b, algorithm=a, **kw) for a in algos]
            outs += list(ops.conv2d_backward(dy, x, w, **kw))
            outs += list(ops.conv2d_backward(dy, x, w, algorithm="im2col_gemm", **kw))
        runs[n] = outs
    names = [f"forward {a}" for a in algos] + ["dx", "dw", "db", "dx gemm", "dw gemm", "db gemm"]
    for n in (2, 3):
        for name, a, b1 in zip(names, runs[n], runs[1]):
            np.testing.assert_array_equal(a, b1, err_msg=f"{name} at {n} threads vs 1")


def test_training_with_thread_count_changed_mid_run_is_bit_identical():
    """A fit whose thread count changes every epoch ends with the weights of a
    fixed-thread fit (the docs promise it; the weight gradient used to differ by 1e-5)."""
    from cconv import nn
    rng = np.random.default_rng(3)
    x = rng.standard_normal((96, 3, 16, 16)).astype(np.float32)
    y = rng.integers(0, 4, 96)

    def net():
        return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                             nn.Flatten(), nn.Linear(32 * 8 * 8, 4)).build((3, 16, 16), seed=0)

    fixed = net()
    with cconv.threads(1):
        cconv.fit(fixed, x, y, epochs=3, batch_size=32, seed=1, progress=False)
    flipping = net()
    counts = iter([2, 3, 1, 2])

    def flip(epoch, logs):
        cconv.set_num_threads(next(counts))
    before = cconv.get_num_threads()
    try:
        cconv.set_num_threads(3)
        cconv.fit(flipping, x, y, epochs=3, batch_size=32, seed=1, progress=False,
                  callbacks=[flip])
    finally:
        cconv.set_num_threads(before)
    for (name, a), (_, b) in zip(fixed.named_parameters(), flipping.named_parameters()):
        np.testing.assert_array_equal(a, b, err_msg=name)
