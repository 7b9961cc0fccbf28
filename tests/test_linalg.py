"""cconv.linalg.eigh against numpy.linalg.eigh: values, vectors, subsets, dtypes, errors."""
import subprocess
import sys

import numpy as np
import pytest

from cconv import linalg


def sym(n, seed=0, dtype=np.float64):
    a = np.random.default_rng(seed).standard_normal((n, n))
    return ((a + a.T) / 2).astype(dtype)


def check_pairs(a, w, v, tol):
    """A v = w v column by column, V orthonormal."""
    a = a.astype(np.float64)
    v = v.astype(np.float64)
    scale = max(1.0, np.abs(w).max())
    assert np.abs(a @ v - v * w).max() <= tol * scale
    assert np.abs(v.T @ v - np.eye(v.shape[1])).max() <= tol


@pytest.mark.parametrize("n", [1, 2, 3, 17, 64, 200])
def test_full_spectrum_matches_numpy(n):
    a = sym(n, seed=n)
    w, v = linalg.eigh(a)
    w_ref, _ = np.linalg.eigh(a)
    assert w.dtype == np.float64 and v.shape == (n, n)
    np.testing.assert_allclose(w, w_ref, rtol=0, atol=1e-12 * max(1, np.abs(w_ref).max()))
    assert np.all(np.diff(w) >= 0)
    check_pairs(a, w, v, 1e-12)


@pytest.mark.parametrize("driver", ["evd", "evr"])
def test_drivers_agree(driver):
    a = sym(50, seed=1)
    w, v = linalg.eigh(a, driver=driver)
    np.testing.assert_allclose(w, np.linalg.eigvalsh(a), atol=1e-12)
    check_pairs(a, w, v, 1e-12)


def test_float32_uses_single_precision():
    a = sym(40, seed=2, dtype=np.float32)
    w, v = linalg.eigh(a)
    assert w.dtype == np.float32 and v.dtype == np.float32
    np.testing.assert_allclose(w, np.linalg.eigvalsh(a.astype(np.float64)), atol=1e-4)
    check_pairs(a, w, v, 1e-4)
    ws, _ = linalg.eigh(a, subset=(0, 2))
    np.testing.assert_allclose(ws, w[:3], atol=1e-4)


def test_integer_input_is_solved_in_float64():
    a = np.array([[2, 1], [1, 2]])
    w, _ = linalg.eigh(a)
    assert w.dtype == np.float64
    np.testing.assert_allclose(w, [1, 3])


@pytest.mark.parametrize("subset", [(0, 0), (0, 4), (10, 19), (-3, -1), (-1, -1), (0, 29)])
def test_subset_by_index(subset):
    a = sym(30, seed=3)
    w_all = np.linalg.eigvalsh(a)
    w, v = linalg.eigh(a, subset=subset)
    lo, hi = (i % 30 for i in subset)
    np.testing.assert_allclose(w, w_all[lo:hi + 1], atol=1e-12)
    assert v.shape == (30, hi - lo + 1)
    check_pairs(a, w, v, 1e-12)


def test_eigenvalues_only():
    a = sym(25, seed=4)
    w, v = linalg.eigh(a, vectors=False)
    assert v is None
    np.testing.assert_allclose(w, np.linalg.eigvalsh(a), atol=1e-12)
    np.testing.assert_allclose(linalg.eigvalsh(a, subset=(-2, -1)),
                               np.linalg.eigvalsh(a)[-2:], atol=1e-12)


def test_input_is_not_modified_and_views_are_fine():
    a = sym(12, seed=5)
    keep = a.copy()
    linalg.eigh(a)
    np.testing.assert_array_equal(a, keep)
    big = sym(24, seed=6)
    view = big[::2, ::2]  # non-contiguous, still symmetric
    np.testing.assert_allclose(linalg.eigvalsh(view), np.linalg.eigvalsh(view), atol=1e-12)
    f = np.asfortranarray(a)
    np.testing.assert_allclose(linalg.eigvalsh(f), np.linalg.eigvalsh(a), atol=1e-12)


def test_degenerate_and_known_spectra():
    np.testing.assert_allclose(linalg.eigvalsh(np.eye(5) * 3), [3] * 5)
    np.testing.assert_allclose(linalg.eigvalsh(np.zeros((4, 4))), [0] * 4)
    w, v = linalg.eigh(np.diag([3.0, -1.0, 2.0]))
    np.testing.assert_allclose(w, [-1, 2, 3])
    np.testing.assert_allclose(np.abs(v), np.eye(3)[:, [1, 2, 0]])
    w, _ = linalg.eigh(np.empty((0, 0)))
    assert w.shape == (0,)


def test_rejects_non_square_and_bad_input():
    with pytest.raises(ValueError, match="square"):
        linalg.eigh(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="square"):
        linalg.eigh(np.zeros(4))
    with pytest.raises(ValueError, match="square"):
        linalg.eigh(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="finite"):
        linalg.eigh(np.array([[1.0, np.nan], [np.nan, 1.0]]))
    with pytest.raises(TypeError, match="real"):
        linalg.eigh(np.eye(2, dtype=complex))
    with pytest.raises(ValueError, match="subset"):
        linalg.eigh(np.eye(3), subset=(2, 1))
    with pytest.raises(ValueError, match="subset"):
        linalg.eigh(np.eye(3), subset=(0, 3))
    with pytest.raises(ValueError, match="subset"):
        linalg.eigh(np.eye(3), subset=5)
    with pytest.raises(ValueError, match="driver"):
        linalg.eigh(np.eye(3), driver="qr")
    with pytest.raises(ValueError, match="evr"):
        linalg.eigh(np.eye(3), subset=(0, 1), driver="evd")
    with pytest.raises(ValueError, match="threads"):
        linalg.eigh(np.eye(3), threads=0)


def test_asymmetry_is_reported():
    a = sym(10, seed=7)
    a[7, 2] += 1e-3
    with pytest.raises(linalg.AsymmetryError, match=r"max\|A - A\^T\| = 0.001"):
        linalg.eigh(a)
    with pytest.warns(linalg.AsymmetryWarning, match="not symmetric"):
        w, _ = linalg.eigh(a, check="warn")
    # like numpy, only the lower triangle is read
    np.testing.assert_allclose(w, np.linalg.eigvalsh(a), atol=1e-12)
    np.testing.assert_allclose(linalg.eigvalsh(a, check="ignore"), np.linalg.eigvalsh(a),
                               atol=1e-12)
    # within a loose tolerance it passes
    linalg.eigh(a, rtol=1e-2)
    with pytest.raises(ValueError, match="check"):
        linalg.eigh(a, check="maybe")
    diff, big = linalg.asymmetry(a)
    assert diff == pytest.approx(1e-3, rel=1e-6) and big == np.abs(a).max()


def test_rounding_level_asymmetry_passes():
    a = sym(60, seed=8)
    b = a @ a.T  # symmetric only up to rounding
    linalg.eigh(b)
    linalg.eigh(b.astype(np.float32))


def test_threads_argument():
    pytest.importorskip("threadpoolctl")
    a = sym(30, seed=9)
    np.testing.assert_allclose(linalg.eigvalsh(a, threads=1), np.linalg.eigvalsh(a),
                               atol=1e-12)


def test_import_cconv_does_not_load_scipy_linalg():
    code = ("import sys, cconv, cconv.linalg; "
            "assert 'scipy.linalg' not in sys.modules, 'loaded early'; "
            "cconv.linalg.eigh([[1.0]]); assert 'cconv._lapack' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_entries_near_the_largest_float(dtype):
    """Finite entries near the type's maximum: the solve works on A / max|A|."""
    big = np.finfo(dtype).max / 4
    a = sym(6, seed=3).astype(np.float64)
    a /= np.abs(a).max()
    w_ref, v_ref = np.linalg.eigh(a)
    w, v = linalg.eigh((a * big).astype(dtype))
    assert np.isfinite(w).all() and np.isfinite(v).all()
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(w / big, w_ref, atol=tol * 6)
    np.testing.assert_allclose(np.abs(v.T @ v_ref), np.eye(6), atol=1e3 * tol)
    for driver in ("evd", "evr"):
        np.testing.assert_allclose(linalg.eigvalsh(a * 1e308, driver=driver) / 1e308, w_ref,
                                   atol=1e-12)
    with pytest.raises(ValueError, match="finite"):
        linalg.eigh(np.array([[1e308, np.inf], [np.inf, 1.0]]))
