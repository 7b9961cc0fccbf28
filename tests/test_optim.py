"""Optimizers and schedules against hand-computed updates (torch's formulas)."""
import math

import numpy as np
import pytest

from cconv.graph import Graph
from cconv.nn.base import Layer
from cconv.optim import SGD, Adam, AdamW, CosineAnnealingLR, StepLR


class Scale(Layer):
    """y = x * w (+ b): a layer whose gradients the tests set by hand."""

    def __init__(self, n=3):
        super().__init__()
        self.n = n

    def build(self, input_shapes, rng=None):
        self.add_param("weight", np.arange(1, self.n + 1, dtype=np.float64))
        self.add_param("bias", np.full(self.n, 0.5))
        super().build(input_shapes, rng)

    def output_shape(self, input_shapes):
        return input_shapes[0]

    def forward(self, x, training=False):
        return x * self.params["weight"] + self.params["bias"]

    def get_config(self):
        return {"n": self.n}


def make_net():
    g = Graph()
    g.add("a", Scale())
    g.add("b", Scale())
    g.build((3,))
    return g


def set_grads(net, value):
    for _, g in net.named_gradients():
        g[...] = value


def params(net):
    return {k: v.copy() for k, v in net.named_parameters()}


def test_sgd_plain_and_weight_decay():
    net = make_net()
    before = params(net)
    opt = SGD(net, lr=0.1, weight_decay=0.01)
    set_grads(net, 2.0)
    opt.step()
    for name, p in net.named_parameters():
        np.testing.assert_allclose(p, before[name] - 0.1 * (2.0 + 0.01 * before[name]))


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_two_steps(nesterov):
    net = make_net()
    p0 = params(net)["a.weight"]
    opt = SGD(net, lr=0.1, momentum=0.9, nesterov=nesterov)
    set_grads(net, 1.0)
    opt.step()
    buf = np.ones(3)                        # first step: buf = g
    d = 1.0 + 0.9 * buf if nesterov else buf
    p1 = p0 - 0.1 * d
    np.testing.assert_allclose(net["a"].params["weight"], p1)
    set_grads(net, 3.0)
    opt.step()
    buf = 0.9 * buf + 3.0
    d = 3.0 + 0.9 * buf if nesterov else buf
    np.testing.assert_allclose(net["a"].params["weight"], p1 - 0.1 * d)


def test_sgd_nesterov_needs_momentum():
    with pytest.raises(ValueError, match="nesterov"):
        SGD(make_net(), lr=0.1, nesterov=True)


def adam_reference(p, grads, lr, b1, b2, eps, wd, decoupled):
    m = v = 0.0
    for t, g in enumerate(grads, start=1):
        if wd and decoupled:
            p = p * (1 - lr * wd)
        elif wd:
            g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mhat, vhat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        p = p - lr * mhat / (np.sqrt(vhat) + eps)
    return p


@pytest.mark.parametrize("cls,wd", [(Adam, 0.0), (Adam, 0.1), (AdamW, 0.1)])
def test_adam_family_three_steps(cls, wd):
    net = make_net()
    p0 = params(net)["b.bias"]
    opt = cls(net, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=wd)
    grads = [np.array([1.0, -2.0, 0.5]), np.array([0.3, 0.1, -1.0]), np.array([2.0, 2.0, 2.0])]
    for g in grads:
        for _, arr in net.named_gradients():
            arr[...] = g
        opt.step()
    ref = adam_reference(p0, grads, 0.01, 0.8, 0.99, 1e-6, wd, cls is AdamW)
    np.testing.assert_allclose(net["b"].params["bias"], ref, rtol=1e-12)


def test_adamw_default_decay_and_amsgrad_runs():
    net = make_net()
    opt = AdamW(net, lr=0.1, amsgrad=True)
    assert opt.param_groups[0]["weight_decay"] == 1e-2
    set_grads(net, 1.0)
    opt.step()
    set_grads(net, 0.1)
    opt.step()
    st = opt.state["a.weight"]
    assert np.all(st["max_exp_avg_sq"] >= st["exp_avg_sq"])


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_frozen_parameters_untouched_no_decay_no_state(cls):
    net = make_net()
    net.freeze("a")
    before = params(net)
    opt = cls(net, lr=0.1, weight_decay=0.5)
    set_grads(net, 1.0)
    opt.step()
    opt.step()
    np.testing.assert_array_equal(net["a"].params["weight"], before["a.weight"])
    np.testing.assert_array_equal(net["a"].params["bias"], before["a.bias"])
    assert not np.array_equal(net["b"].params["weight"], before["b.weight"])
    assert set(opt.state) == {"b.weight", "b.bias"}
    net.unfreeze("a")
    opt.step()
    assert not np.array_equal(net["a"].params["weight"], before["a.weight"])


def test_parameter_groups_by_prefix_and_name():
    net = make_net()
    before = params(net)
    opt = SGD([{"params": "a", "lr": 1.0}, {"params": ["b.weight"]}], net=net, lr=0.1)
    assert opt.param_groups[0]["params"] == ["a.weight", "a.bias"]
    set_grads(net, 1.0)
    opt.step()
    got = params(net)
    np.testing.assert_allclose(got["a.weight"], before["a.weight"] - 1.0)
    np.testing.assert_allclose(got["b.weight"], before["b.weight"] - 0.1)
    np.testing.assert_array_equal(got["b.bias"], before["b.bias"])   # not in any group


def test_parameter_group_errors():
    net = make_net()
    with pytest.raises(ValueError, match="one group only"):
        SGD([{"params": "a"}, {"params": "a.weight"}], net=net, lr=0.1)
    with pytest.raises(KeyError, match="nope"):
        SGD([{"params": "nope"}], net=net, lr=0.1)
    with pytest.raises(TypeError, match="net="):
        SGD([{"params": "a"}], lr=0.1)
    with pytest.raises(TypeError, match="momentun"):
        SGD(net, lr=0.1, momentun=0.9)
    with pytest.raises(ValueError, match="unknown key"):
        SGD([{"params": "a", "momentun": 0.9}], net=net, lr=0.1)


def test_zero_grad():
    net = make_net()
    opt = Adam(net)
    set_grads(net, 1.0)
    opt.zero_grad()
    assert all(np.all(g == 0) for _, g in net.named_gradients())


def test_updates_follow_replaced_arrays():
    """astype() swaps the arrays: the optimizer looks them up by name, so it follows."""
    net = make_net()
    opt = SGD(net, lr=0.5)
    net.astype(np.float32)
    set_grads(net, 1.0)
    opt.step()
    np.testing.assert_allclose(net["a"].params["weight"], [0.5, 1.5, 2.5])


def test_state_dict_round_trip():
    net = make_net()
    opt = Adam(net, lr=0.01)
    set_grads(net, 1.0)
    opt.step()
    sd = opt.state_dict()
    opt.step()
    after_two = params(net)
    net2 = make_net()
    set_grads(net2, 1.0)
    opt2 = Adam(net2, lr=0.01)
    opt2.step()
    fresh = Adam(net2, lr=0.01)
    fresh.load_state_dict(sd)
    fresh.step()
    for k, v in params(net2).items():
        np.testing.assert_allclose(v, after_two[k], rtol=1e-12)
    bad = sd.copy()
    bad["param_groups"] = [dict(sd["param_groups"][0], params=["a.weight"])]
    with pytest.raises(ValueError, match="groups"):
        fresh.load_state_dict(bad)


def test_step_lr():
    opt = SGD(make_net(), lr=1.0)
    sched = StepLR(opt, step_size=2, gamma=0.5)
    lrs = []
    for _ in range(5):
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == [1.0, 0.5, 0.5, 0.25, 0.25]


def test_cosine_annealing_matches_closed_form():
    opt = SGD(make_net(), lr=0.1)
    sched = CosineAnnealingLR(opt, T_max=5, eta_min=0.01)
    for t in range(1, 11):
        sched.step()
        expected = 0.01 + (0.1 - 0.01) * (1 + math.cos(math.pi * t / 5)) / 2
        assert sched.get_last_lr()[0] == pytest.approx(expected, rel=1e-9, abs=1e-12)
