"""convolve / correlate: the textbook operators, equal to scipy.signal's direct method."""
import numpy as np
import pytest
import scipy.signal

from conftest import assert_close

from cconv import ops

MODES = ["full", "same", "valid"]
DTYPES = [np.float32, np.float64]

SIZES_1D = [(1, 1), (5, 1), (1, 5), (7, 3), (3, 7), (8, 4), (4, 8), (6, 6), (9, 2), (33, 8),
            (100, 17)]
SIZES_2D = [((1, 1), (1, 1)), ((5, 6), (3, 3)), ((3, 3), (5, 6)), ((6, 7), (2, 4)),
            ((4, 4), (4, 4)), ((8, 5), (1, 1)), ((1, 9), (1, 4)), ((7, 6), (6, 1)),
            ((30, 20), (5, 4))]


def scipy_op(name, a, v, mode):
    f = scipy.signal.convolve if name == "convolve" else scipy.signal.correlate
    return f(np.asarray(a, np.float64), np.asarray(v, np.float64), mode=mode, method="direct")


def textbook_convolve_1d(a, v):
    """(a*v)_t = sum_tau a_tau v_(t - tau), full mode."""
    out = np.zeros(len(a) + len(v) - 1)
    for t in range(len(out)):
        for tau in range(len(a)):
            if 0 <= t - tau < len(v):
                out[t] += a[tau] * v[t - tau]
    return out


@pytest.mark.parametrize("name", ["convolve", "correlate"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("na,nv", SIZES_1D, ids=[f"{a}-{v}" for a, v in SIZES_1D])
def test_1d_vs_scipy(rng, dtype, mode, name, na, nv):
    a = rng.standard_normal(na).astype(dtype)
    v = rng.standard_normal(nv).astype(dtype)
    got = getattr(ops, name)(a, v, mode=mode)
    assert_close(got, scipy_op(name, a, v, mode), dtype)


@pytest.mark.parametrize("name", ["convolve", "correlate"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sa,sv", SIZES_2D, ids=[f"{a}-{v}" for a, v in SIZES_2D])
def test_2d_vs_scipy(rng, nthreads, dtype, mode, name, sa, sv):
    a = rng.standard_normal(sa).astype(dtype)
    v = rng.standard_normal(sv).astype(dtype)
    got = getattr(ops, name)(a, v, mode=mode)
    assert_close(got, scipy_op(name, a, v, mode), dtype)


def test_default_mode_is_full(rng):
    a, v = rng.standard_normal(6), rng.standard_normal(3)
    assert ops.convolve(a, v).shape == (8,)
    assert ops.correlate(a, v).shape == (8,)


def test_convolve_is_the_textbook_sum(rng):
    a, v = rng.standard_normal(7), rng.standard_normal(4)
    assert_close(ops.convolve(a, v), textbook_convolve_1d(a, v), np.float64)


def test_convolve_flips_the_kernel():
    """Convolving a delta with [1, 2, 3] writes the kernel as is (correlate reverses it)."""
    delta = np.array([0.0, 0.0, 1.0, 0.0, 0.0])
    k = np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(ops.convolve(delta, k, mode="same"), [0, 1, 2, 3, 0])
    np.testing.assert_array_equal(ops.correlate(delta, k, mode="same"), [0, 3, 2, 1, 0])


def test_2d_convolve_by_hand():
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    v = np.array([[0.0, 1.0], [1.0, 0.0]])
    np.testing.assert_array_equal(ops.convolve(a, v), [[0, 1, 2], [1, 5, 4], [3, 4, 0]])


@pytest.mark.parametrize("name", ["convolve", "correlate"])
def test_integer_inputs_give_float64(name):
    a = np.arange(6)
    v = np.array([1, -2, 3])
    got = getattr(ops, name)(a, v)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, scipy_op(name, a, v, "full"))
    a2 = np.arange(12, dtype=np.int32).reshape(3, 4)
    got = getattr(ops, name)(a2, np.ones((2, 2), dtype=bool), mode="same")
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, scipy_op(name, a2, np.ones((2, 2)), "same"))


def test_float_dtypes(rng):
    a32 = rng.standard_normal(9).astype(np.float32)
    assert ops.convolve(a32, a32[:3]).dtype == np.float32
    assert ops.convolve(a32, a32[:3].astype(np.float64)).dtype == np.float64
    assert ops.correlate(a32.astype(np.float16), a32[:3]).dtype == np.float32


@pytest.mark.parametrize("name", ["convolve", "correlate"])
def test_non_contiguous_inputs(rng, name):
    a = rng.standard_normal((12, 14))
    v = rng.standard_normal((5, 6))
    f = getattr(ops, name)
    for av, vv in [(a[::2, ::-1], v[:, ::2]), (np.asfortranarray(a), v.T),
                   (a.astype(">f8"), v.astype(">f8"))]:
        assert_close(f(av, vv, mode="same").astype(np.float64),
                     scipy_op(name, np.ascontiguousarray(av), np.ascontiguousarray(vv), "same"),
                     np.float64)


@pytest.mark.parametrize("name", ["convolve", "correlate"])
def test_valid_mode_needs_one_array_to_contain_the_other(name):
    """Like scipy: 2-D valid mode with neither array at least as large in every axis."""
    with pytest.raises(ValueError):
        scipy_op(name, np.ones((3, 5)), np.ones((5, 3)), "valid")
    with pytest.raises(ValueError):
        getattr(ops, name)(np.ones((3, 5)), np.ones((5, 3)), mode="valid")


@pytest.mark.parametrize("name", ["convolve", "correlate"])
def test_bad_mode(name):
    with pytest.raises(ValueError, match="mode"):
        getattr(ops, name)(np.ones(4), np.ones(2), mode="circular")


@pytest.mark.parametrize("name", ["convolve", "correlate"])
def test_bad_ndim(name):
    f = getattr(ops, name)
    with pytest.raises(ValueError):
        f(np.ones((2, 2, 2)), np.ones((2, 2, 2)))
    with pytest.raises(ValueError):
        f(np.ones(4), np.ones((2, 2)))


@pytest.mark.parametrize("name", ["convolve", "correlate"])
def test_complex_is_rejected(name):
    with pytest.raises(TypeError, match=r"\ba\b"):
        getattr(ops, name)(np.ones(4, complex), np.ones(2))
    with pytest.raises(TypeError, match=r"\bv\b"):
        getattr(ops, name)(np.ones(4), np.ones(2, complex))


def test_nan_propagates():
    a = np.array([1.0, np.nan, 2.0, 3.0, 4.0, 5.0])
    got = ops.convolve(a, np.array([1.0, 1.0]), mode="valid")
    ref = scipy_op("convolve", a, [1.0, 1.0], "valid")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(got[~np.isnan(got)], ref[~np.isnan(ref)])
