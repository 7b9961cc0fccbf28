"""Optimizer steps and a LeNet forward/backward against torch (skipped without torch)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cconv.graph import Sequential
from cconv.nn import Conv2d, Flatten, Linear, MaxPool2d, ReLU, softmax_cross_entropy
from cconv.optim import SGD, Adam, AdamW


def lenet():
    return Sequential(Conv2d(1, 6, 5), ReLU(), MaxPool2d(2), Conv2d(6, 16, 5), ReLU(),
                      MaxPool2d(2), Flatten(), Linear(256, 120), ReLU(), Linear(120, 84),
                      ReLU(), Linear(84, 10)).build((1, 28, 28), seed=0)


def torch_twin(net):
    """The same LeNet in torch with net's weights copied in."""
    t = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(6, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(256, 120), torch.nn.ReLU(), torch.nn.Linear(120, 84), torch.nn.ReLU(),
        torch.nn.Linear(84, 10))
    ours = [a for _, a in net.named_parameters()]
    with torch.no_grad():
        for p, a in zip(t.parameters(), ours, strict=True):
            p.copy_(torch.from_numpy(a))
    return t


def batch(n=8):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, n)


def close(ours, theirs, tol=1e-5):
    theirs = theirs.detach().numpy()
    scale = max(1.0, float(np.abs(theirs).max()))
    np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol * scale)


def test_lenet_forward_backward_matches_torch():
    net = lenet()
    t = torch_twin(net)
    x, y = batch()
    out = net.forward(x, training=True)
    loss, grad = softmax_cross_entropy(out, y)
    gx = net.backward(grad)
    xt = torch.from_numpy(x).requires_grad_(True)
    out_t = t(xt)
    loss_t = torch.nn.functional.cross_entropy(out_t, torch.from_numpy(y))
    loss_t.backward()
    close(out, out_t)
    assert loss == pytest.approx(loss_t.item(), rel=1e-5)
    close(gx, xt.grad)
    for (name, g), p in zip(net.named_gradients(), t.parameters(), strict=True):
        close(g, p.grad)


@pytest.mark.parametrize("make", [
    lambda net, params: (SGD(net, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
                         torch.optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True,
                                         weight_decay=1e-2)),
    lambda net, params: (SGD(net, lr=0.05, momentum=0.8, dampening=0.1, weight_decay=1e-3),
                         torch.optim.SGD(params, lr=0.05, momentum=0.8, dampening=0.1,
                                         weight_decay=1e-3)),
    lambda net, params: (Adam(net, lr=1e-2, weight_decay=1e-2),
                         torch.optim.Adam(params, lr=1e-2, weight_decay=1e-2)),
    lambda net, params: (AdamW(net, lr=1e-2, betas=(0.8, 0.95)),
                         torch.optim.AdamW(params, lr=1e-2, betas=(0.8, 0.95))),
    lambda net, params: (Adam(net, lr=1e-2, amsgrad=True),
                         torch.optim.Adam(params, lr=1e-2, amsgrad=True)),
], ids=["sgd_nesterov_wd", "sgd_dampening", "adam_wd", "adamw", "adam_amsgrad"])
def test_optimizer_steps_match_torch(make):
    net = lenet()
    t = torch_twin(net)
    ours, theirs = make(net, list(t.parameters()))
    x, y = batch()
    rng = np.random.default_rng(1)
    for step in range(3):     # the second and third steps exercise the moment buffers
        # Both get our gradients: Adam's update ~ m / sqrt(v) amplifies float32
        # rounding differences of near-zero gradients, and the subject is the optimizer.
        _, grad = softmax_cross_entropy(net.forward(x, training=True), y)
        net.backward(grad)
        if step == 2:          # also an arbitrary gradient, larger than the real ones
            for _, g in net.named_gradients():
                g[...] = rng.standard_normal(g.shape)
        for (_, g), p in zip(net.named_gradients(), t.parameters(), strict=True):
            p.grad = torch.from_numpy(g.copy())
        ours.step()
        theirs.step()
    for (name, a), p in zip(net.named_parameters(), t.parameters(), strict=True):
        close(a, p, tol=1e-5)


def test_schedulers_match_torch():
    from cconv.optim import CosineAnnealingLR, StepLR

    net = lenet()
    t = torch_twin(net)
    for ours_cls, theirs_cls, kw in [(StepLR, torch.optim.lr_scheduler.StepLR,
                                      {"step_size": 3, "gamma": 0.3}),
                                     (CosineAnnealingLR, torch.optim.lr_scheduler.CosineAnnealingLR,
                                      {"T_max": 4, "eta_min": 1e-4})]:
        ours = SGD(net, lr=0.1)
        theirs = torch.optim.SGD(t.parameters(), lr=0.1)
        s1, s2 = ours_cls(ours, **kw), theirs_cls(theirs, **kw)
        for _ in range(12):
            theirs.step()
            s1.step()
            s2.step()
            assert s1.get_last_lr()[0] == pytest.approx(s2.get_last_lr()[0], rel=1e-12, abs=1e-15)
