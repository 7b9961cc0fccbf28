"""Loss tests: values, finite-difference gradients, stability, label forms, registry."""
import numpy as np
import pytest

from cconv import nn
from cconv.gradcheck import numerical_gradient
from cconv.nn import LOSSES, get_loss, mse, softmax_cross_entropy


def _check_grad(loss_fn, pred, target):
    loss, grad = loss_fn(pred, target)
    num = numerical_gradient(lambda: loss_fn(pred, target)[0], pred)
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-9)
    return loss


def _reference_ce(logits, probs_target):
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    count = logits.size // logits.shape[1]
    return -(probs_target * log_p).sum() / count


def _one_hot(labels, c):
    return np.moveaxis(np.eye(c)[labels], -1, 1)


@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 2, 3), (3, 4, 2)])
def test_cross_entropy_integer_labels(shape, rng):
    logits = rng.standard_normal(shape) * 3
    labels = rng.integers(0, shape[1], (shape[0],) + shape[2:])
    loss = _check_grad(softmax_cross_entropy, logits, labels)
    assert loss == pytest.approx(_reference_ce(logits, _one_hot(labels, shape[1])), rel=1e-12)


def test_cross_entropy_one_hot_equals_integer_labels(rng):
    logits = rng.standard_normal((6, 4))
    labels = rng.integers(0, 4, 6)
    a = softmax_cross_entropy(logits, labels)
    b = softmax_cross_entropy(logits, np.eye(4)[labels])
    assert a[0] == pytest.approx(b[0], rel=1e-12)
    np.testing.assert_allclose(a[1], b[1], atol=1e-15)


def test_cross_entropy_soft_labels(rng):
    logits = rng.standard_normal((5, 3))
    target = rng.dirichlet(np.ones(3), 5)
    loss = _check_grad(softmax_cross_entropy, logits, target)
    assert loss == pytest.approx(_reference_ce(logits, target), rel=1e-12)
    # gradient stays exact for targets that do not sum to one
    _check_grad(softmax_cross_entropy, logits, target * 2)


def test_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4]], np.float32)
    loss, grad = softmax_cross_entropy(logits, np.array([1, 2]))
    assert np.isfinite(loss) and np.isfinite(grad).all()
    assert loss == pytest.approx((1e4 + np.log(2)) / 2, rel=1e-6)
    assert grad.dtype == np.float32
    assert grad[0, 0] == pytest.approx(0.5) and grad[0, 1] == pytest.approx(-0.5)


def test_cross_entropy_mean_over_batch():
    # uniform logits: loss log C whatever the batch size, grad (1/C - onehot)/N
    loss, grad = softmax_cross_entropy(np.zeros((8, 4)), np.zeros(8, int))
    assert loss == pytest.approx(np.log(4))
    np.testing.assert_allclose(grad[:, 0], (0.25 - 1) / 8)
    np.testing.assert_allclose(grad[:, 1:], 0.25 / 8)


@pytest.mark.parametrize("labels, match", [
    (np.array([0, 5]), r"\[0, 3\)"),
    (np.array([-1, 0]), r"\[0, 3\)"),
    (np.array([0, 1, 2]), "shape"),
    (np.zeros((2, 4)), "shape"),
    (np.array(["a", "b"]), "dtype"),
])
def test_cross_entropy_rejects_bad_labels(labels, match):
    with pytest.raises(ValueError, match=match):
        softmax_cross_entropy(np.zeros((2, 3)), labels)


def test_cross_entropy_rejects_1d_logits():
    with pytest.raises(ValueError, match="logits"):
        softmax_cross_entropy(np.zeros(3), np.array([0]))


@pytest.mark.parametrize("shape", [(4,), (3, 5), (2, 3, 4, 4)])
def test_mse(shape, rng):
    pred, target = rng.standard_normal(shape), rng.standard_normal(shape)
    loss = _check_grad(mse, pred, target)
    assert loss == pytest.approx(((pred - target) ** 2).mean(), rel=1e-12)


def test_mse_keeps_float32_and_checks_shape(rng):
    pred = rng.standard_normal((3, 2)).astype(np.float32)
    loss, grad = mse(pred, np.zeros((3, 2)))
    assert isinstance(loss, float) and grad.dtype == np.float32
    with pytest.raises(ValueError, match="target"):
        mse(pred, np.zeros((2, 3)))


def test_loss_registry():
    assert LOSSES["cross_entropy"] is softmax_cross_entropy
    assert LOSSES["mse"] is mse
    assert get_loss("cross_entropy") is softmax_cross_entropy
    assert get_loss(mse) is mse
    assert nn.LOSSES is LOSSES
    with pytest.raises(ValueError, match="loss"):
        get_loss("hinge")
