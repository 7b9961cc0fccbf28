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
