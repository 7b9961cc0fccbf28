"""ops.matmul / ops.contract_axis: numpy's results on cconv's own GEMM, and the
layers that multiply activations (MatMul, Resize) never call numpy's BLAS."""
import numpy as np
import pytest

from conftest import assert_close

from cconv import nn, ops

SHAPES = [((3, 4), (4, 5)), ((2, 3, 4), (4, 6)), ((2, 1, 3, 4), (5, 4, 2)),
          ((1, 7, 1), (3, 1, 9)), ((4, 2, 8, 16), (4, 2, 16, 3)), ((2, 0, 4), (4, 3))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sa,sb", SHAPES)
def test_matmul_matches_numpy(rng, nthreads, sa, sb, dtype):
    a = rng.standard_normal(sa).astype(dtype)
    b = rng.standard_normal(sb).astype(dtype)
    assert_close(ops.matmul(a, b), np.matmul(a.astype(np.float64), b), dtype)


def test_matmul_takes_strided_and_mixed_inputs(rng):
    a = rng.standard_normal((3, 8, 5))[:, ::2]
    b = np.asfortranarray(rng.standard_normal((5, 4)).astype(np.float32))
    got = ops.matmul(a, b)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, a @ b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sa,sb,message", [
    ((3,), (3, 2), ">= 2 dimensions"), ((2, 3), (4, 2), "inner dimensions differ"),
    ((2, 2, 3), (3, 3, 1), "broadcast")])
def test_matmul_refuses_bad_shapes(sa, sb, message):
    with pytest.raises(ValueError, match=message):
        ops.matmul(np.zeros(sa), np.zeros(sb))


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_contract_axis_matches_einsum(rng, axis):
    x = rng.standard_normal((2, 3, 5, 4))
    m = rng.standard_normal((7, x.shape[axis]))
    ref = np.moveaxis(np.tensordot(m, x, axes=([1], [axis])), 0, axis)
    np.testing.assert_allclose(ops.contract_axis(x, m, axis), ref, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="m must be"):
        ops.contract_axis(x, m[:, :-1] if m.shape[1] > 1 else np.zeros((2, 9)), axis)


def test_layers_multiplying_activations_never_call_numpys_blas(rng, monkeypatch):
    resize = nn.Resize(scale=(2.0, 2.0), mode="linear")
    resize.build([(3, 5, 6)])
    matmul = nn.MatMul()
    matmul.build([(2, 4, 5), (2, 5, 3)])
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    a = rng.standard_normal((2, 2, 4, 5)).astype(np.float32)
    b = rng.standard_normal((2, 2, 5, 3)).astype(np.float32)
    ref_resize, ref_mm = resize.forward(x, training=True), matmul.forward(a, b, training=True)
    grads = resize.backward(np.ones_like(ref_resize)), matmul.backward(np.ones_like(ref_mm))

    def refuse(*args, **kwargs):
        raise AssertionError("numpy.matmul called: OpenBLAS's pool would run beside cconv's")

    monkeypatch.setattr(np, "matmul", refuse)
    assert_close(resize.forward(x, training=True), ref_resize, np.float32)
    assert_close(matmul.forward(a, b, training=True), ref_mm, np.float32)
    assert_close(resize.backward(np.ones_like(ref_resize)), grads[0], np.float32)
    for got, want in zip(matmul.backward(np.ones_like(ref_mm)), grads[1]):
        assert_close(got, want, np.float32)
