"""Hessian of a loss: HVPs, dense Hessian, Lanczos, trace, density, classification, Taylor."""
import copy
import importlib.util
import logging

import numpy as np
import pytest

import cconv
from cconv import analysis, linalg, nn
from cconv.analysis import HessianOperator

RNG = np.random.default_rng(0)


def make(*layers, shape, seed=1, dtype=None):
    net = cconv.Sequential(*layers)
    net.build(shape, seed=seed)
    if dtype is not None:
        net.astype(dtype)
    return net


def set_params(net, values):
    for name, a in net.named_parameters():
        if name in values:
            a[...] = values[name]


def reference_gradient(net, loss, x, y, names, theta):
    """The gradient by the net's own backward (float64 copy), theta placed in `names`."""
    g = copy.deepcopy(net).astype(np.float64)
    params = dict(g.named_parameters())
    offset = 0
    for name in names:
        p = params[name]
        p[...] = theta[offset:offset + p.size].reshape(p.shape)
        offset += p.size
    out = g.forward(np.asarray(x, np.float64), training=True)
    _, d = nn.get_loss(loss)(out, y)
    g.backward(d)
    grads = dict(g.named_gradients())
    return np.concatenate([grads[n].ravel() for n in names])


def fd_hessian(grad_fn, theta, h=1e-5):
    n = theta.size
    out = np.empty((n, n))
    for i in range(n):
        e = np.zeros(n)
        e[i] = h
        out[:, i] = (grad_fn(theta + e) - grad_fn(theta - e)) / (2 * h)
    return out


def rel_err(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def small_cnn(seed=1):
    return make(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.MaxPool2d(2),
                nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 5), nn.Sigmoid(),
                nn.Linear(5, 3), shape=(2, 6, 6), seed=seed)


X6 = RNG.standard_normal((6, 2, 6, 6))
Y6 = RNG.integers(0, 3, 6)


# ------------------------------------------------------------------ closed forms
def test_linear_model_mse_is_the_quadratic_2_xtx_over_n():
    x = RNG.standard_normal((20, 4))
    t = RNG.standard_normal((20, 1))
    net = make(nn.Linear(4, 1, bias=False), shape=(4,))
    h = analysis.hessian(net, "mse", x, t)
    np.testing.assert_allclose(h, 2 * x.T @ x / 20, rtol=1e-12, atol=1e-14)
    assert analysis.classify(h) == "minimum"


def test_linear_model_mse_with_bias_several_outputs():
    n, d, c = 15, 3, 2
    x = RNG.standard_normal((n, d))
    t = RNG.standard_normal((n, c))
    net = make(nn.Linear(d, c), shape=(d,))
    h = analysis.hessian(net, "mse", x, t)
    a = np.hstack([x, np.ones((n, 1))])
    block = 2 * a.T @ a / (n * c)                 # per output, over [w_o, b_o]
    expected_aug = np.kron(np.eye(c), block)      # order (o, j) with j = d the bias
    order = [o * (d + 1) + j for o in range(c) for j in range(d)] + \
            [o * (d + 1) + d for o in range(c)]
    np.testing.assert_allclose(h, expected_aug[np.ix_(order, order)], atol=1e-13)


def test_softmax_regression_matches_closed_form():
    n, d, c = 30, 3, 4
    x = RNG.standard_normal((n, d))
    y = RNG.integers(0, c, n)
    net = make(nn.Linear(d, c), shape=(d,), dtype=np.float64)
    w, b = net[0].params["weight"], net[0].params["bias"]
    z = x @ w.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    a = np.hstack([x, np.ones((n, 1))])
    expected = sum(np.kron(np.diag(pi) - np.outer(pi, pi), np.outer(ai, ai))
                   for pi, ai in zip(p, a)) / n
    order = [o * (d + 1) + j for o in range(c) for j in range(d)] + \
            [o * (d + 1) + d for o in range(c)]
    h = analysis.hessian(net, "cross_entropy", x, y)
    np.testing.assert_allclose(h, expected[np.ix_(order, order)], atol=1e-13)
    # softmax is invariant to adding a constant to all logits: flat directions
    assert analysis.classify(h) == "degenerate"


def test_two_layer_linear_net_at_zero_is_a_saddle():
    x = RNG.standard_normal((10, 1))
    t = 3 * x + 0.1 * RNG.standard_normal((10, 1))
    net = make(nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False), shape=(1,))
    set_params(net, {"0_linear.weight": 0.0, "1_linear.weight": 0.0})
    h = analysis.hessian(net, "mse", x, t)
    m = -2 * np.mean(x * t)
    np.testing.assert_allclose(h, [[0, m], [m, 0]], atol=1e-14)
    assert analysis.classify(h) == "saddle"
    w = linalg.eigvalsh(h)
    np.testing.assert_allclose(w, [-abs(m), abs(m)], rtol=1e-12)


def neg_square(pred, target):
    """-mean(pred^2): concave in pred (a custom loss, no exact second-order rule)."""
    p = np.asarray(pred, np.float64)
    return -float((p * p).mean()), -2 * p / p.size


def test_concave_loss_gives_a_maximum():
    x = RNG.standard_normal((12, 3))
    net = make(nn.Linear(3, 1, bias=False), shape=(3,))
    op = HessianOperator(net, neg_square, x, np.zeros((12, 1)))
    assert not op.exact    # custom loss: second derivative by finite differences
    h = op.dense()
    np.testing.assert_allclose(h, -2 * x.T @ x / 12, rtol=1e-7, atol=1e-9)
    assert analysis.classify(h) == "maximum"


def test_more_features_than_samples_is_degenerate():
    x = RNG.standard_normal((3, 6))
    net = make(nn.Linear(6, 1, bias=False), shape=(6,))
    info = analysis.definiteness(analysis.hessian(net, "mse", x, np.zeros((3, 1))))
    assert info["label"] == "degenerate"
    assert (info["positive"], info["zero"], info["negative"]) == (3, 3, 0)


# ------------------------------------------------------------------ small CNNs
def test_small_cnn_gradient_and_hessian_against_finite_differences():
    net = small_cnn()
    op = HessianOperator(net, "cross_entropy", X6, Y6)
    assert op.exact and op.size == sum(a.size for _, a in net.named_parameters())
    theta = op.theta()
    grad_fn = lambda t: reference_gradient(net, "cross_entropy", X6, Y6, op.names, t)
    assert rel_err(op.gradient(), grad_fn(theta)) < 1e-12
    h = op.dense()
    assert op.last_asymmetry[0] <= 1e-14 * op.last_asymmetry[1]
    assert rel_err(h, fd_hessian(grad_fn, theta)) < 1e-6


def test_hvp_rop_and_fd_methods_agree():
    net = small_cnn(seed=2)
    v = RNG.standard_normal(HessianOperator(net, "cross_entropy", X6, Y6).size)
    exact = analysis.hvp(net, "cross_entropy", X6, Y6, v)
    fd = analysis.hvp(net, "cross_entropy", X6, Y6, v, method="fd")
    assert rel_err(fd, exact) < 1e-6


def test_hvp_dict_form_and_named_subset_is_a_block_of_the_full_hessian():
    net = small_cnn(seed=3)
    full = HessianOperator(net, "cross_entropy", X6, Y6)
    h = full.dense()
    sub = HessianOperator(net, "cross_entropy", X6, Y6, params=["3_conv2d", "8_linear.bias"])
    assert sub.names == ["3_conv2d.weight", "3_conv2d.bias", "8_linear.bias"]
    idx = np.concatenate([np.arange(full.offsets[i], full.offsets[i + 1])
                          for i, n in enumerate(full.names) if n in sub.names])
    np.testing.assert_allclose(sub.dense(), h[np.ix_(idx, idx)], atol=1e-13)
    v = {n: RNG.standard_normal(s) for n, s in zip(sub.names, sub.shapes)}
    hv = analysis.hvp(net, "cross_entropy", X6, Y6, v, params=["3_conv2d", "8_linear.bias"])
    assert set(hv) == set(sub.names)
    np.testing.assert_allclose(sub.flatten(hv), h[np.ix_(idx, idx)] @ sub.flatten(v),
                               atol=1e-13)
    with pytest.raises(KeyError, match="nope"):
        HessianOperator(net, "cross_entropy", X6, Y6, params="nope")


def test_the_callers_net_is_not_modified():
    net = small_cnn(seed=4)
    before = {n: a.copy() for n, a in net.named_parameters()}
    analysis.taylor_check(net, "cross_entropy", X6, Y6)
    analysis.hessian(net, "cross_entropy", X6, Y6, params="8_linear")
    for n, a in net.named_parameters():
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, before[n])


LAYER_NETS = {
    "leaky_avgpool": lambda: make(nn.Conv2d(2, 3, 3), nn.LeakyReLU(0.1), nn.AvgPool2d(2),
                                  nn.Flatten(), nn.Linear(12, 3), shape=(2, 6, 6)),
    "prelu_gap": lambda: make(nn.Conv2d(2, 3, 3), nn.PReLU(3), nn.GlobalAvgPool(),
                              nn.Linear(3, 3), shape=(2, 6, 6)),
    "hardswish": lambda: make(nn.Conv2d(2, 2, 3, stride=2), nn.HardSwish(), nn.Flatten(),
                              nn.Linear(8, 3), shape=(2, 6, 6)),
    "softmax_layer": lambda: make(nn.Conv2d(2, 3, 3, groups=1, dilation=2), nn.Softmax(1),
                                  nn.Flatten(), nn.Linear(12, 3), shape=(2, 6, 6)),
    # ONNX opset < 13: over channels and positions together
    "softmax_flatten": lambda: make(nn.Conv2d(2, 3, 3, dilation=2), nn.Softmax(1, flatten=True),
                                    nn.Flatten(), nn.Linear(12, 3), shape=(2, 6, 6)),
    # no rule of its own (not a Softmax): the local finite-difference fallback
    "log_softmax": lambda: make(nn.Conv2d(2, 3, 3, dilation=2), nn.LogSoftmax(1),
                                nn.Flatten(), nn.Linear(12, 3), shape=(2, 6, 6)),
    "grouped": lambda: make(nn.Conv2d(2, 4, 3, groups=2, padding="same"), nn.Tanh(),
                            nn.GlobalAvgPool(), nn.Linear(4, 3), shape=(2, 6, 6)),
}


@pytest.mark.parametrize("case", sorted(LAYER_NETS))
def test_layer_rules_against_finite_differences(case):
    net = LAYER_NETS[case]()
    x = X6 * 2.0 if case == "hardswish" else X6
    op = HessianOperator(net, "cross_entropy", x, Y6)
    theta = op.theta()
    grad_fn = lambda t: reference_gradient(net, "cross_entropy", x, Y6, op.names, t)
    assert rel_err(op.gradient(), grad_fn(theta)) < 1e-12
    assert rel_err(op.dense(), fd_hessian(grad_fn, theta)) < 1e-6


def test_conv1d_maxpool1d_and_mse():
    x = RNG.standard_normal((5, 2, 10))
    t = RNG.standard_normal((5, 2))
    net = make(nn.Conv1d(2, 3, 3, padding=(1, 2)), nn.Tanh(), nn.MaxPool1d(2), nn.Flatten(),
               nn.Linear(15, 2), shape=(2, 10))
    op = HessianOperator(net, "mse", x, t)
    grad_fn = lambda th: reference_gradient(net, "mse", x, t, op.names, th)
    assert rel_err(op.dense(), fd_hessian(grad_fn, op.theta())) < 1e-6


def test_probability_targets_and_a_dag_with_add_and_concat():
    g = cconv.Graph(inputs=["x"])
    g.add("c1", nn.Conv2d(2, 3, 3, padding=1), inputs=["x"])
    g.add("t", nn.Tanh())
    g.add("c2", nn.Conv2d(3, 3, 3, padding=1))
    g.add("add", nn.Add(), inputs=["t", "c2"])
    g.add("cat", nn.Concat(1), inputs=["add", "t"])
    g.add("pool", nn.AvgPool2d(3))
    g.add("flat", nn.Flatten())
    g.add("fc", nn.Linear(24, 3))
    g.build((2, 6, 6), seed=0)
    target = RNG.dirichlet(np.ones(3), 6)
    op = HessianOperator(g, "cross_entropy", X6, target)
    grad_fn = lambda th: reference_gradient(g, "cross_entropy", X6, target, op.names, th)
    assert rel_err(op.dense(), fd_hessian(grad_fn, op.theta())) < 1e-6


# ------------------------------------------------------------------ BatchNorm, Dropout
def bn_net():
    net = make(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Tanh(), nn.Flatten(),
               nn.Linear(48, 3), shape=(2, 6, 6))
    rng = np.random.default_rng(5)
    for name, a in net.named_parameters():
        if "batchnorm" in name:
            a[...] = rng.uniform(0.5, 1.5, a.shape)
    return net


def test_batchnorm_eval_mode_uses_running_statistics():
    net = bn_net()
    op = HessianOperator(net, "cross_entropy", X6, Y6)            # eval is the default
    assert "1_batchnorm2d.running_mean" not in op.names           # state, not a parameter
    assert "1_batchnorm2d.weight" in op.names
    expected_loss = nn.softmax_cross_entropy(
        copy.deepcopy(net).astype(np.float64)(X6), Y6)[0]
    assert op.loss() == pytest.approx(expected_loss, rel=1e-12)
    h = op.dense()
    assert rel_err(h, fd_hessian(op.gradient, op.theta())) < 1e-6


def test_batchnorm_train_mode_differentiates_through_batch_statistics():
    net = bn_net()
    op = HessianOperator(net, "cross_entropy", X6, Y6, mode="train")
    grad_fn = lambda t: reference_gradient(net, "cross_entropy", X6, Y6, op.names, t)
    assert rel_err(op.gradient(), grad_fn(op.theta())) < 1e-12
    assert rel_err(op.dense(), fd_hessian(grad_fn, op.theta())) < 1e-6
    # the running statistics are never updated by the analysis
    np.testing.assert_array_equal(op.graph.nodes["1_batchnorm2d"].layer.params["running_mean"],
                                  net.nodes["1_batchnorm2d"].layer.params["running_mean"])


def test_dropout_identity_in_eval_fixed_mask_in_train():
    drop = make(nn.Conv2d(2, 3, 3), nn.Tanh(), nn.Dropout(0.5), nn.Flatten(),
                nn.Linear(48, 3), shape=(2, 6, 6))
    plain = make(nn.Conv2d(2, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(48, 3),
                 shape=(2, 6, 6))
    set_params(plain, {n.replace("3_flatten", "x").replace("4_linear", "3_linear"): a
                       for n, a in drop.named_parameters()})
    h_eval = analysis.hessian(drop, "cross_entropy", X6, Y6)
    np.testing.assert_allclose(h_eval, analysis.hessian(plain, "cross_entropy", X6, Y6),
                               atol=1e-14)
    op = HessianOperator(drop, "cross_entropy", X6, Y6, mode="train", seed=3)
    assert op.loss() == op.loss()          # one fixed mask: a function of theta
    h = op.dense()
    assert rel_err(h, fd_hessian(op.gradient, op.theta())) < 1e-6
    assert np.abs(h - h_eval).max() > 1e-3


# ------------------------------------------------------------------ plugin layers, losses
class Cube(nn.Layer):
    """a x^3 + x with a learnable a: a layer with no R-operator rule."""
    type_name = "CubeForHessianTest"

    def __init__(self):
        super().__init__()
        self._saved = None

    def output_shape(self, input_shapes):
        return tuple(input_shapes[0])

    def build(self, input_shapes, rng=None):
        self.params, self.grads, self.trainable = {}, {}, {}
        self.add_param("a", np.full(1, 0.7, np.float32))
        super().build(input_shapes, rng)

    def forward(self, x, training=False):
        if training:
            self._saved = (x,)
        return self.params["a"][0] * x ** 3 + x

    def backward(self, grad_out):
        (x,) = self._saved
        self.grads["a"][...] = (grad_out * x ** 3).sum()
        return grad_out * (3 * self.params["a"][0] * x ** 2 + 1)


def test_layer_without_a_rule_falls_back_to_local_finite_differences():
    net = make(nn.Conv2d(2, 3, 3), Cube(), nn.Flatten(), nn.Linear(48, 3), shape=(2, 6, 6))
    x = X6 * 0.3
    op = HessianOperator(net, "cross_entropy", x, Y6)
    assert not op.exact and op.program.inexact == ["1_cubeforhessiantest"]
    grad_fn = lambda t: reference_gradient(net, "cross_entropy", x, Y6, op.names, t)
    assert rel_err(op.dense(), fd_hessian(grad_fn, op.theta())) < 1e-6


def test_register_rule_makes_a_layer_exact():
    class CubeRule:
        def forward(self, layer, xs, rxs, p, rp, mode, state):
            (x,), (rx,) = xs, rxs
            a = p["a"][0]
            y = a * x ** 3 + x
            ry = None if rx is None else (3 * a * x ** 2 + 1) * rx
            if rp.get("a") is not None:
                ry = (0 if ry is None else ry) + rp["a"][0] * x ** 3
            return y, ry, (x, rx)

        def backward(self, layer, ctx, g, rg, p, rp, need_input):
            x, rx = ctx
            a = p["a"][0]
            dx = g * (3 * a * x ** 2 + 1)
            rdx = None if rg is None else rg * (3 * a * x ** 2 + 1)
            rda = None if rg is None else (rg * x ** 3).sum()
            if rx is not None:
                rdx = (0 if rdx is None else rdx) + g * 6 * a * x * rx
                rda = (0 if rda is None else rda) + (g * 3 * x ** 2 * rx).sum()
            if rp.get("a") is not None:
                rdx = (0 if rdx is None else rdx) + g * 3 * x ** 2 * rp["a"][0]
            return [dx], [rdx], {"a": np.array([(g * x ** 3).sum()])}, \
                {"a": None if rda is None else np.array([rda])}

    analysis.register_rule(Cube, CubeRule())
    try:
        net = make(nn.Conv2d(2, 3, 3), Cube(), nn.Flatten(), nn.Linear(48, 3),
                   shape=(2, 6, 6))
        x = X6 * 0.3
        op = HessianOperator(net, "cross_entropy", x, Y6)
        assert op.exact
        h = op.dense()
        assert op.last_asymmetry[0] < 1e-14 * op.last_asymmetry[1]
        grad_fn = lambda t: reference_gradient(net, "cross_entropy", x, Y6, op.names, t)
        assert rel_err(h, fd_hessian(grad_fn, op.theta())) < 1e-6
        with pytest.raises(ValueError, match="already registered"):
            analysis.register_rule(Cube, CubeRule())
    finally:
        from cconv.analysis import rop
        rop._RULES.pop(Cube, None)


def test_batch_size_chunks_give_the_same_function():
    net = small_cnn(seed=6)
    a = HessianOperator(net, "cross_entropy", X6, Y6)
    b = HessianOperator(net, "cross_entropy", X6, Y6, batch_size=4)
    v = RNG.standard_normal(a.size)
    assert a.loss() == pytest.approx(b.loss(), rel=1e-13)
    np.testing.assert_allclose(a.matvec(v), b.matvec(v), rtol=1e-11, atol=1e-14)


def test_frozen_parameters_are_left_out_unless_asked():
    net = small_cnn(seed=7)
    net.freeze("0_conv2d")
    op = HessianOperator(net, "cross_entropy", X6, Y6)
    assert not any(n.startswith("0_conv2d") for n in op.names)
    op_all = HessianOperator(net, "cross_entropy", X6, Y6, params="all")
    assert op_all.names[:2] == ["0_conv2d.weight", "0_conv2d.bias"]
    theta = op_all.theta()
    grad_fn = lambda t: reference_gradient(
        copy.deepcopy(net).unfreeze(), "cross_entropy", X6, Y6, op_all.names, t)
    assert rel_err(op_all.gradient(), grad_fn(theta)) < 1e-12


# ------------------------------------------------------------------ dense memory guard
def test_dense_hessian_states_memory_and_refuses_above_the_limit(caplog):
    net = small_cnn(seed=8)
    n = HessianOperator(net, "cross_entropy", X6, Y6).size
    with pytest.raises(analysis.HessianTooLargeError,
                       match=rf"{n} parameters -> .* refused. Pass max_bytes={n * n * 8}"):
        analysis.hessian(net, "cross_entropy", X6, Y6, max_bytes=1000)
    said = []
    h = analysis.hessian(net, "cross_entropy", X6, Y6, max_bytes=n * n * 8, log_fn=said.append)
    assert h.shape == (n, n)
    assert said == [(f"{n} parameters -> {n * n * 8 / 1e3:.3g} kB for the dense float64 "
                     f"Hessian ({n} x {n}; limit {n * n * 8 / 1e3:.3g} kB)")]
    with caplog.at_level(logging.INFO, logger="cconv.analysis"):
        analysis.hessian(net, "cross_entropy", X6, Y6, params="8_linear")
    assert "parameters ->" in caplog.text
    assert analysis.hessian_nbytes(21386) == 21386 ** 2 * 8


def test_bad_arguments():
    net = small_cnn()
    with pytest.raises(TypeError, match="Graph"):
        HessianOperator(nn.Linear(2, 2), "mse", X6, Y6)
    with pytest.raises(ValueError, match="method"):
        HessianOperator(net, "cross_entropy", X6, Y6, method="magic")
    with pytest.raises(ValueError, match="mode"):
        HessianOperator(net, "cross_entropy", X6, Y6, mode="test")
    with pytest.raises(ValueError, match="one target per sample"):
        HessianOperator(net, "cross_entropy", X6, Y6[:3])
    op = HessianOperator(net, "cross_entropy", X6, Y6)
    with pytest.raises(ValueError, match="flat vector"):
        op.matvec(np.ones(3))
    with pytest.raises(ValueError, match="zero vector"):
        analysis.curvature(op, v=np.zeros(op.size))
    with pytest.raises(ValueError, match="net, loss, x and y"):
        analysis.hvp(net, None, X6, Y6, np.ones(3))


# ------------------------------------------------------------------ Lanczos and friends
@pytest.fixture(scope="module")
def dense_case():
    net = make(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
               nn.Linear(64, 10), nn.Tanh(), nn.Linear(10, 3), shape=(1, 8, 8))
    x = RNG.standard_normal((20, 1, 8, 8))
    y = RNG.integers(0, 3, 20)
    op = HessianOperator(net, "cross_entropy", x, y)
    h = op.dense()
    return op, h, linalg.eigvalsh(h)


@pytest.mark.parametrize("which", ["largest", "smallest", "both"])
def test_lanczos_agrees_with_the_dense_eigensolver(dense_case, which):
    op, _, w = dense_case
    res = analysis.top_eigenvalues(op, k=4, which=which)
    expected = {"largest": w[-4:], "smallest": w[:4], "both": np.r_[w[:4], w[-4:]]}[which]
    assert res.converged and res.which == which
    np.testing.assert_allclose(res.eigenvalues, expected, atol=1e-8 * np.abs(w).max())
    assert res.residuals.max() < 1e-6 * np.abs(w).max()
    assert res.iterations < op.size and res.n_matvec == res.iterations + len(expected)
    for lam, v in zip(res.eigenvalues, res.eigenvectors.T):
        assert np.linalg.norm(v) == pytest.approx(1, abs=1e-10)
    assert np.asarray(res).shape == (len(expected),)
    assert "Lanczos" in res.report()


def test_lanczos_is_seeded_and_finds_repeated_eigenvalues_after_a_restart():
    diag = np.array([3.0, 3.0, 3.0, 1.0, 0.5, 0.0, -1.0, -2.0, -2.0])

    class Diag:
        size = diag.size

        def matvec(self, v):
            return diag * v

    a = analysis.top_eigenvalues(Diag(), k=3, which="largest", seed=1)
    b = analysis.top_eigenvalues(Diag(), k=3, which="largest", seed=1)
    np.testing.assert_array_equal(a.eigenvalues, b.eigenvalues)
    # one start vector spans only the 6 distinct eigenvalues; when that Krylov space
    # is exhausted Lanczos restarts orthogonally and finds the other copies
    np.testing.assert_allclose(a.eigenvalues, [3, 3, 3], atol=1e-10)
    assert a.converged
    # converged before the space ran out: true eigenvalues, but a copy of -2 can be
    # missed (the documented limit of single-vector Lanczos)
    lo = analysis.top_eigenvalues(Diag(), k=2, which="smallest")
    assert lo.converged and lo.eigenvalues[0] == pytest.approx(-2)
    assert all(np.min(np.abs(diag - lam)) < 1e-10 for lam in lo.eigenvalues)


def test_lanczos_reports_non_convergence_and_checks_arguments(dense_case):
    op, _, _ = dense_case
    res = analysis.top_eigenvalues(op, k=3, which="smallest", max_iter=6, tol=1e-14,
                                   verify=False)
    assert not res.converged and res.iterations == 6
    assert len(res.history) >= 1
    with pytest.raises(ValueError, match="which"):
        analysis.lanczos(op.matvec, op.size, k=2, which="middle")
    with pytest.raises(ValueError, match="k must be"):
        analysis.lanczos(op.matvec, op.size, k=0)
    with pytest.raises(ValueError, match="max_iter"):
        analysis.lanczos(op.matvec, op.size, k=5, max_iter=3)


def test_hutchinson_trace(dense_case):
    op, h, _ = dense_case
    tr = analysis.hutchinson_trace(op, samples=60, seed=0)
    assert abs(tr.estimate - np.trace(h)) < 4 * tr.stderr
    assert tr.samples.shape == (60,) and float(tr) == tr.estimate

    class Diag:   # Rademacher probes are exact on a diagonal
        size = 10

        def matvec(self, v):
            return np.arange(10.0) * v

    assert analysis.hutchinson_trace(Diag(), samples=3).estimate == pytest.approx(45)


def test_spectral_density_by_stochastic_lanczos_quadrature():
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.standard_normal((60, 60)))
    eigs = np.r_[rng.normal(-1, 0.1, 30), rng.normal(2, 0.1, 30)]
    mat = (q * eigs) @ q.T

    class Dense:
        size = 60

        def matvec(self, v):
            return mat @ v

    sd = analysis.spectral_density(Dense(), probes=20, steps=30, seed=0)
    np.testing.assert_allclose(sd.weights.sum(axis=1), 1, atol=1e-10)
    grid, phi = sd.density(sigma=0.2)
    assert np.trapezoid(phi, grid) == pytest.approx(1, abs=1e-3)
    # the two clusters: the density has its mass near -1 and 2, none near 0.5
    at = lambda t: phi[np.argmin(np.abs(grid - t))]
    assert at(-1) > 20 * at(0.5) and at(2) > 20 * at(0.5)
    assert sd.moments(1) == pytest.approx(eigs.mean(), abs=0.15)
    assert sd.trace() == pytest.approx(eigs.sum(), abs=0.15 * 60)


def test_spectral_density_of_a_network(dense_case):
    op, _, w = dense_case
    sd = analysis.spectral_density(op, probes=4, steps=40)
    assert sd.nodes.min() >= w.min() - 1e-8 and sd.nodes.max() <= w.max() + 1e-8


# ------------------------------------------------------------------ classify, curvature, Taylor
def test_classify_from_eigenvalues_and_matrices():
    assert analysis.classify([1.0, 2.0, 3.0]) == "minimum"
    assert analysis.classify([-1.0, -2.0]) == "maximum"
    assert analysis.classify([-1.0, 0.0, 2.0]) == "saddle"
    assert analysis.classify([0.0, 1.0]) == "degenerate"
    assert analysis.classify([0.0, -1.0]) == "degenerate"
    assert analysis.classify([0.0, 0.0]) == "degenerate"
    assert analysis.classify(np.diag([1.0, -1.0])) == "saddle"
    # rounding-level eigenvalues count as zero (rtol 1e-6 of the largest)
    assert analysis.classify([-1e-9, 1.0, 2.0]) == "degenerate"
    assert analysis.classify([-1e-9, 1.0, 2.0], rtol=0, atol=0) == "saddle"
    assert analysis.classify([0.5, 1.0], tol=0.6) == "degenerate"
    info = analysis.definiteness([1.0, 4.0])
    assert info["condition"] == 4.0 and info["tol"] == pytest.approx(4e-6)
    with pytest.raises(ValueError, match="square"):
        analysis.classify(np.ones((2, 3)))
    with pytest.raises(linalg.AsymmetryError):
        analysis.classify(np.array([[1.0, 2.0], [0.0, 1.0]]))


def test_curvature_along_a_direction(dense_case):
    op, h, w = dense_case
    v = RNG.standard_normal(op.size)
    assert analysis.curvature(op, v=v) == pytest.approx(v @ h @ v / (v @ v), rel=1e-10)
    top = analysis.top_eigenvalues(op, k=1)
    assert analysis.curvature(op, v=top.eigenvectors[:, 0]) == pytest.approx(w[-1], rel=1e-8)


def test_taylor_model_is_exact_for_a_quadratic():
    x = RNG.standard_normal((20, 4))
    t = RNG.standard_normal((20, 1))
    net = make(nn.Linear(4, 1, bias=False), shape=(4,))
    chk = analysis.taylor_check(net, "mse", x, t)
    assert chk.error2.max() < 1e-10 * max(1, np.abs(chk.actual).max())


def test_taylor_model_error_shrinks_like_t_cubed():
    net = make(nn.Conv2d(2, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(48, 3),
               shape=(2, 6, 6))
    chk = analysis.taylor_check(net, "cross_entropy", X6, Y6,
                                steps=[1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2, 3.2e-2])
    assert 2.6 < chk.order() < 3.4
    assert chk.relative_error2[0] < 1e-2 and chk.error2[0] < chk.error1[0]
    assert "2nd order" in chk.table()
    steep = analysis.taylor_check(net, "cross_entropy", X6, Y6, v="gradient", steps=[1e-3])
    assert steep.slope < 0 and steep.actual[0] < steep.loss0


# importorskip in the decorator skipped the whole module when torch is absent
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")
def test_against_torch_autograd_hessian():
    import torch
    import torch.nn.functional as F

    net = make(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.MaxPool2d(2), nn.Flatten(),
               nn.Linear(27, 4), shape=(2, 6, 6), seed=5)
    x = RNG.standard_normal((8, 2, 6, 6))
    y = RNG.integers(0, 4, 8)
    ours = analysis.hessian(net, "cross_entropy", x, y)
    shapes = [a.shape for _, a in net.named_parameters()]
    flat = torch.tensor(np.concatenate([a.ravel().astype(np.float64)
                                        for _, a in net.named_parameters()]))
    xt, yt = torch.tensor(x), torch.tensor(y)

    def loss(theta):
        parts, i = [], 0
        for s in shapes:
            n = int(np.prod(s))
            parts.append(theta[i:i + n].reshape(s))
            i += n
        w1, b1, w2, b2 = parts
        h = F.max_pool2d(torch.tanh(F.conv2d(xt, w1, b1, padding=1)), 2)
        return F.cross_entropy(F.linear(h.flatten(1), w2, b2), yt)

    theirs = torch.autograd.functional.hessian(loss, flat).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-12 * max(1, np.abs(theirs).max()))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1, -0.5, "1e9", None, True,
                                 np.float64("nan"), [1]])
def test_dense_hessian_refuses_a_max_bytes_that_is_not_a_size(bad):
    """NaN passed every `need > max_bytes` test and went on to allocate the matrix."""
    net = small_cnn(seed=8)
    with pytest.raises(ValueError, match=r"max_bytes must be a finite number of bytes >= 0, "
                                         r"got "):
        analysis.hessian(net, "cross_entropy", X6, Y6, max_bytes=bad)
    op = HessianOperator(net, "cross_entropy", X6, Y6)
    with pytest.raises(ValueError, match="max_bytes"):
        op.dense(max_bytes=bad)
    assert isinstance(analysis.hessian(net, "cross_entropy", X6, Y6, max_bytes=np.int64(10**9)),
                      np.ndarray)
