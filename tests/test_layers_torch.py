"""Each layer's forward and backward against torch.nn (skipped without torch)."""
import numpy as np
import pytest

from cconv import nn
from layer_cases import CASES

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
tnn = torch.nn
F = torch.nn.functional


def _pad2(p):
    return p if isinstance(p, (int, str)) else tuple(p)


def _conv(layer):
    cls = tnn.Conv1d if layer.nd == 1 else tnn.Conv2d
    pad = layer.padding
    if isinstance(pad, tuple) and any(isinstance(p, tuple) for p in pad) or \
            (layer.nd == 1 and isinstance(pad, tuple) and len(pad) == 2) or \
            (pad == "same" and max(layer.stride) > 1):
        return None  # torch's conv modules cannot express these paddings
    return cls(layer.in_ch, layer.out_ch, layer.kernel_size, stride=layer.stride,
               padding=_pad2(pad), dilation=layer.dilation, groups=layer.groups,
               bias=layer.bias)


class _Lambda(tnn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *xs):
        return self.fn(*xs)


def torch_module(layer):
    """The torch.nn equivalent of a cconv layer (None where torch has none)."""
    name = layer.type_name
    if name in ("Conv1d", "Conv2d"):
        return _conv(layer)
    if name.startswith("MaxPool"):
        cls = tnn.MaxPool1d if layer.nd == 1 else tnn.MaxPool2d
        return cls(layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                   ceil_mode=layer.ceil_mode)
    if name.startswith("AvgPool"):
        cls = tnn.AvgPool1d if layer.nd == 1 else tnn.AvgPool2d
        return cls(layer.kernel_size, layer.stride, layer.padding, ceil_mode=layer.ceil_mode,
                   count_include_pad=layer.count_include_pad)
    if name == "GlobalAvgPool":
        return _Lambda(lambda x: x.mean(dim=tuple(range(2, x.dim()))))
    simple = {"ReLU": tnn.ReLU, "Sigmoid": tnn.Sigmoid, "Tanh": tnn.Tanh,
              "HardSigmoid": tnn.Hardsigmoid, "HardSwish": tnn.Hardswish,
              "Flatten": tnn.Flatten}
    if name in simple:
        return simple[name]()
    if name == "LeakyReLU":
        return tnn.LeakyReLU(layer.negative_slope)
    if name == "PReLU":
        return tnn.PReLU(layer.num_parameters, layer.init)
    if name == "Softmax" and layer.flatten:   # ONNX opset < 13: over all axes from axis on
        return _Lambda(lambda x: torch.softmax(x.flatten(start_dim=layer.axis),
                                               dim=layer.axis).reshape(x.shape))
    if name == "Softmax":
        return tnn.Softmax(dim=layer.axis)
    if name == "Linear":
        return tnn.Linear(layer.in_features, layer.out_features, bias=layer.bias)
    if name == "Reshape":
        return _Lambda(lambda x: x.reshape((x.shape[0],) + layer.shape))
    if name == "Transpose":
        return _Lambda(lambda x: x.permute((0,) + tuple(a + 1 for a in layer.axes)))
    if name.startswith("BatchNorm"):
        cls = tnn.BatchNorm1d if name == "BatchNorm1d" else tnn.BatchNorm2d
        return cls(layer.num_features, eps=layer.eps, momentum=layer.momentum,
                   affine=layer.affine)
    if name == "Add":
        return _Lambda(lambda *xs: sum(xs[1:], xs[0]))
    if name == "Concat":
        return _Lambda(lambda *xs: torch.cat(xs, dim=layer.axis))
    return None  # Dropout: torch's masks come from its own generator


def _copy_params(layer, module):
    state = {}
    for pname, p in layer.params.items():
        state[pname] = torch.from_numpy(p.copy())
    module.load_state_dict(state, strict=False)


def _compare(case, training, rng, dtype):
    layer = case.make()
    layer.build(case.shapes, rng=np.random.default_rng(0))
    layer.astype(dtype)
    for name, p in layer.params.items():  # non-trivial gamma/beta/slopes
        if layer.trainable[name] and not name.startswith("running"):
            p[...] = rng.standard_normal(p.shape).astype(dtype)
    if "running_var" in layer.params:
        layer.params["running_mean"][...] = rng.standard_normal(layer.num_features)
        layer.params["running_var"][...] = rng.uniform(0.5, 2, layer.num_features)
    module = torch_module(layer)
    module = module.to(torch.float64 if dtype == np.float64 else torch.float32)
    _copy_params(layer, module)
    module.train(training)
    xs = case.draw(rng, dtype)
    txs = [torch.from_numpy(x.copy()).requires_grad_(True) for x in xs]
    y = layer.forward(*xs, training=training)
    ty = module(*txs)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
    if "running_var" in layer.params:
        np.testing.assert_allclose(layer.params["running_mean"], module.running_mean, **tol)
        np.testing.assert_allclose(layer.params["running_var"], module.running_var, **tol)
    if not training:
        return
    grad = rng.standard_normal(y.shape).astype(dtype)
    ty.backward(torch.from_numpy(grad))
    gx = layer.backward(grad)
    if case.id == "hardsigmoid" and dtype == np.float64:
        tol = dict(rtol=1e-7, atol=1e-10)  # torch's backward scales by a float32 1/6
    gx = list(gx) if isinstance(gx, tuple) else [gx]
    for g, tx in zip(gx, txs):
        np.testing.assert_allclose(g, tx.grad.numpy(), **tol)
    tparams = dict(module.named_parameters())
    for name, t in layer.trainable.items():
        if t:
            np.testing.assert_allclose(layer.grads[name], tparams[name].grad.numpy(), **tol)


def _has_torch_equivalent(case):
    layer = case.make()
    layer.build(case.shapes, rng=np.random.default_rng(0))
    return torch_module(layer) is not None


# cases without a torch.nn module (asymmetric padding, dropout's RNG) have their
# own checks below or in test_layers.py; they are left out rather than skipped
TORCH_CASES = [c for c in CASES if _has_torch_equivalent(c)]
IDS = [c.id for c in TORCH_CASES]


@pytest.mark.parametrize("case", TORCH_CASES, ids=IDS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "infer"])
def test_layer_matches_torch_float64(case, training, rng):
    _compare(case, training, rng, np.float64)


@pytest.mark.parametrize("case", TORCH_CASES, ids=IDS)
def test_layer_matches_torch_float32(case, rng):
    _compare(case, True, rng, np.float32)


def test_conv_asymmetric_padding_matches_padded_torch_conv(rng):
    layer = nn.Conv2d(2, 3, 3, stride=2, padding=((1, 0), (0, 2)))
    layer.build([(2, 7, 6)], rng)
    layer.astype(np.float64)
    x = rng.standard_normal((2, 2, 7, 6))
    tx = torch.from_numpy(x).requires_grad_(True)
    tw = torch.from_numpy(layer.params["weight"].copy()).requires_grad_(True)
    ty = F.conv2d(F.pad(tx, (0, 2, 1, 0)), tw, torch.from_numpy(layer.params["bias"]),
                  stride=2)
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = rng.standard_normal(y.shape)
    ty.backward(torch.from_numpy(g))
    np.testing.assert_allclose(layer.backward(g), tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.grads["weight"], tw.grad.numpy(), rtol=1e-10,
                               atol=1e-12)


def test_dropout_statistics_match_torch_semantics():
    x = np.ones((100, 100), np.float32)
    ours = nn.Dropout(0.25, seed=0).forward(x, training=True)
    theirs = tnn.Dropout(0.25)(torch.from_numpy(x)).numpy()
    assert set(np.unique(ours)) == set(np.unique(theirs))  # {0, 1/(1-p)}
    assert nn.Dropout(0.25).forward(x) is x


def test_losses_match_torch(rng):
    logits = rng.standard_normal((6, 5))
    labels = rng.integers(0, 5, 6)
    tl = torch.from_numpy(logits).requires_grad_(True)
    tloss = F.cross_entropy(tl, torch.from_numpy(labels))
    tloss.backward()
    loss, grad = nn.softmax_cross_entropy(logits, labels)
    assert loss == pytest.approx(tloss.item(), rel=1e-12)
    np.testing.assert_allclose(grad, tl.grad.numpy(), rtol=1e-10, atol=1e-14)

    probs = rng.dirichlet(np.ones(5), 6)
    tl.grad = None
    tloss = F.cross_entropy(tl, torch.from_numpy(probs))
    tloss.backward()
    loss, grad = nn.softmax_cross_entropy(logits, probs)
    assert loss == pytest.approx(tloss.item(), rel=1e-12)
    np.testing.assert_allclose(grad, tl.grad.numpy(), rtol=1e-10, atol=1e-14)

    seg = rng.standard_normal((2, 3, 4, 4))
    seg_labels = rng.integers(0, 3, (2, 4, 4))
    ts = torch.from_numpy(seg).requires_grad_(True)
    tloss = F.cross_entropy(ts, torch.from_numpy(seg_labels))
    tloss.backward()
    loss, grad = nn.softmax_cross_entropy(seg, seg_labels)
    assert loss == pytest.approx(tloss.item(), rel=1e-12)
    np.testing.assert_allclose(grad, ts.grad.numpy(), rtol=1e-10, atol=1e-14)

    pred, target = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    tp = torch.from_numpy(pred).requires_grad_(True)
    tloss = F.mse_loss(tp, torch.from_numpy(target))
    tloss.backward()
    loss, grad = nn.mse(pred, target)
    assert loss == pytest.approx(tloss.item(), rel=1e-12)
    np.testing.assert_allclose(grad, tp.grad.numpy(), rtol=1e-10, atol=1e-14)
