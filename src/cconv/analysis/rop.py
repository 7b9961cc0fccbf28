"""Exact Hessian-vector products: forward-over-reverse, Pearlmutter's R-operator.

For a direction v in parameter space, R{f} = d/dt f(theta + t v) at t = 0.
The forward pass carries each value a together with its tangent R{a}; the
backward pass carries each gradient g together with R{g}; R of the
parameter gradients is then H v, exactly (to rounding), for about twice the
cost of one gradient. Every layer needs a rule for both passes:

    forward(layer, xs, rxs, p, rp, mode, state) -> (y, ry, ctx)
    backward(layer, ctx, g, rg, p, rp, need_input) -> (dxs, rdxs, dp, rdp)

xs / rxs: the inputs and their tangents (None: zero tangent); p: the layer's
parameters (float64), rp: {name: tangent} for those in the direction;
mode: "eval" or "train"; state: a dict private to this node and batch chunk.
dxs / rdxs: one entry per input (None when not needed); dp / rdp: gradients
and their tangents by parameter name.

Rules exist for every built-in layer. A layer without one (a plugin layer)
falls back to `FiniteDifferenceRule`: central differences of its own
forward/backward along the direction, one layer at a time (accuracy about
1e-8 relative, not rounding level); `register_rule` adds an exact one.

Modes: "eval" (the default of cconv.analysis) runs BatchNorm on its running
statistics and Dropout as the identity: the loss is the deterministic
function the trained net computes. "train" runs BatchNorm on the batch's
statistics (without updating the running ones) and Dropout with one fixed
mask per node and batch chunk, drawn from a seeded generator, so the loss
is still a function of the parameters that a Hessian describes.
"""
import numpy as np

from .. import nn, ops

__all__ = ["FiniteDifferenceRule", "Program", "loss_rule", "register_rule", "rule_for"]

_RULES = {}


def register_rule(layer_class, rule, override=False):
    """Use `rule` (an object with forward/backward as above) for layer_class and subclasses."""
    if layer_class in _RULES and not override:
        raise ValueError(f"an R-operator rule for {layer_class.__name__} is already "
                         f"registered: pass override=True to replace it")
    _RULES[layer_class] = rule


def rule_for(layer):
    """The rule for this layer (its class or nearest registered base), else the FD fallback."""
    rule = getattr(layer, "rop_rule", None)
    if rule is not None:
        return rule
    for cls in type(layer).__mro__:
        if cls in _RULES:
            return _RULES[cls]
    return FiniteDifferenceRule()


def _acc(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return a + b


# ------------------------------------------------------------------ convolution
class ConvRule:
    """y = conv(x, W) + b: bilinear in (x, W), so every R term is one more conv."""

    @staticmethod
    def _fns(layer):
        if layer.nd == 2:
            return ops.conv2d, ops.conv2d_backward
        return ops.conv1d, ops.conv1d_backward

    @staticmethod
    def _args(layer):
        return {"stride": layer.stride, "padding": layer.padding,
                "dilation": layer.dilation, "groups": layer.groups}

    def forward(self, layer, xs, rxs, p, rp, mode, state):
        conv, _ = self._fns(layer)
        args = self._args(layer)
        (x,), (rx,) = xs, rxs
        w, b = p["weight"], p.get("bias")
        y = conv(x, w, b, **args)
        ry = None
        if rx is not None:
            ry = conv(rx, w, None, **args)
        if rp.get("weight") is not None:
            ry = _acc(ry, conv(x, rp["weight"], None, **args))
        if rp.get("bias") is not None:
            rb = rp["bias"].reshape((1, -1) + (1,) * layer.nd)
            ry = rb + np.zeros_like(y) if ry is None else ry + rb
        return y, ry, (x, rx)

    def backward(self, layer, ctx, g, rg, p, rp, need_input):
        _, bwd = self._fns(layer)
        args = self._args(layer)
        x, rx = ctx
        w = p["weight"]
        has_b = "bias" in p
        dx, dw, db = bwd(g, x, w, need_input=need_input, need_weight=True, need_bias=has_b,
                         **args)
        rdx = rdw = rdb = None
        if rg is not None:
            rdx, rdw, rdb = bwd(rg, x, w, need_input=need_input, need_weight=True,
                                need_bias=has_b, **args)
        if need_input and rp.get("weight") is not None:
            rdx = _acc(rdx, bwd(g, x, rp["weight"], need_input=True, need_weight=False,
                                need_bias=False, **args)[0])
        if rx is not None:
            rdw = _acc(rdw, bwd(g, rx, w, need_input=False, need_weight=True,
                                need_bias=False, **args)[1])
        dp, rdp = {"weight": dw}, {"weight": rdw}
        if has_b:
            dp["bias"], rdp["bias"] = db, rdb
        return [dx], [rdx], dp, rdp


# ------------------------------------------------------------------ linear
class LinearRule:
    """y = x W^T + b over the last axis."""

    def forward(self, layer, xs, rxs, p, rp, mode, state):
        (x,), (rx,) = xs, rxs
        w, b = p["weight"], p.get("bias")
        n_in, n_out = layer.in_features, layer.out_features
        x2 = x.reshape(-1, n_in)
        y = ops.gemm(x2, w, trans_b=True)
        if b is not None:
            y += b
        ry = None
        if rx is not None:
            ry = ops.gemm(rx.reshape(-1, n_in), w, trans_b=True)
        if rp.get("weight") is not None:
            ry = _acc(ry, ops.gemm(x2, rp["weight"], trans_b=True))
        if rp.get("bias") is not None:
            ry = rp["bias"] + np.zeros_like(y) if ry is None else ry + rp["bias"]
        shape = x.shape[:-1] + (n_out,)
        return y.reshape(shape), (None if ry is None else ry.reshape(shape)), (x, rx)

    def backward(self, layer, ctx, g, rg, p, rp, need_input):
        x, rx = ctx
        n_in, n_out = layer.in_features, layer.out_features
        w = p["weight"]
        x2, g2 = x.reshape(-1, n_in), g.reshape(-1, n_out)
        dx = ops.gemm(g2, w).reshape(x.shape) if need_input else None
        dp = {"weight": ops.gemm(g2, x2, trans_a=True)}
        rdx = rdw = rdb = None
        if rg is not None:
            rg2 = rg.reshape(-1, n_out)
            if need_input:
                rdx = ops.gemm(rg2, w)
            rdw = ops.gemm(rg2, x2, trans_a=True)
            rdb = rg2.sum(axis=0)
        if need_input and rp.get("weight") is not None:
            rdx = _acc(rdx, ops.gemm(g2, rp["weight"]))
        if rx is not None:
            rdw = _acc(rdw, ops.gemm(g2, rx.reshape(-1, n_in), trans_a=True))
        rdp = {"weight": rdw}
        if "bias" in p:
            dp["bias"] = g2.sum(axis=0)
            rdp["bias"] = rdb
        return [dx], [None if rdx is None else rdx.reshape(x.shape)], dp, rdp


# ------------------------------------------------------------------ element-wise
def _sigmoid_d2(x, y):
    return y * (1 - y) * (1 - 2 * y)


def _tanh_d2(x, y):
    return -2 * y * (1 - y * y)


def _hardswish_d2(x, y):
    return ((x > -3) & (x < 3)) * (1.0 / 3.0)


class ElementwiseRule:
    """y = s(x) element by element: R{y} = s' R{x}; R{dx} = s' R{g} + g s'' R{x}.

    s' comes from the layer itself (backward of ones right after a training
    forward), so it matches the layer's own gradient at kinks; s'' is None for
    piecewise-linear functions (ReLU, LeakyReLU, HardSigmoid).
    """

    def __init__(self, second_derivative=None):
        self.second_derivative = second_derivative

    def forward(self, layer, xs, rxs, p, rp, mode, state):
        (x,), (rx,) = xs, rxs
        y = layer.forward(x, training=True)
        d1 = layer.backward(np.ones_like(y))
        ry = None if rx is None else d1 * rx
        return y, ry, (x, y, d1, rx)

    def backward(self, layer, ctx, g, rg, p, rp, need_input):
        x, y, d1, rx = ctx
        dx = g * d1
        rdx = None if rg is None else rg * d1
        if rx is not None and self.second_derivative is not None:
            rdx = _acc(rdx, g * self.second_derivative(x, y) * rx)
        return [dx], [rdx], {}, {}


class SoftmaxRule:
    """y = softmax(x) along an axis: J = diag(y) - y y^T, symmetric."""

    @staticmethod
    def _rows(layer, a, axis):
        """a with the softmax's axes last and merged (flatten=True: all from axis on)."""
        if a is None or not getattr(layer, "flatten", False):
            return a
        return a.reshape(a.shape[:axis] + (-1,))

    def forward(self, layer, xs, rxs, p, rp, mode, state):
        (x,), (rx,) = xs, rxs
        axis = layer.axis % x.ndim
        y = layer.forward(x)
        ry = None
        if rx is not None:
            yr, rxr = self._rows(layer, y, axis), self._rows(layer, rx, axis)
            ax = -1 if getattr(layer, "flatten", False) else axis
            ry = (yr * (rxr - (yr * rxr).sum(axis=ax, keepdims=True))).reshape(y.shape)
        return y, ry, (y, ry, axis)

    def backward(self, layer, ctx, g, rg, p, rp, need_input):
        y, ry, axis = ctx
        shape = y.shape
        y, ry, g, rg = (self._rows(layer, a, axis) for a in (y, ry, g, rg))
        if getattr(layer, "flatten", False):
            axis = -1
        gy = (g * y).sum(axis=axis, keepdims=True)
        dx = y * (g - gy)
        rdx = None
        if rg is not None:
            rdx = y * (rg - (rg * y).sum(axis=axis, keepdims=True))
        if ry is not None:
            rdx = _acc(rdx, ry * (g - gy) - y * (g * ry).sum(axis=axis, keepdims=True))
        return [dx.reshape(shape)], [None if rdx is None else rdx.reshape(shape)], {}, {}


class PReLURule:
    """y = max(x, 0) + a min(x, 0), a per channel (axis 1) or shared."""

    @staticmethod
    def _shape(layer, x, a):
        if layer.num_parameters == 1:
            return a.reshape(())
        return a.reshape((1, -1) + (1,) * (x.ndim - 2))

    @staticmethod
    def _reduce(layer, t):
        axes = tuple(i for i in range(t.ndim) if i != 1 or layer.num_parameters == 1)
        return t.sum(axis=axes).reshape(layer.num_parameters)

    def forward(self, layer, xs, rxs, p, rp, mode, state):
        (x,), (rx,) = xs, rxs
        a = self._shape(layer, x, p["weight"])
        neg = np.minimum(x, 0)
        slope = a + (1 - a) * (x > 0)
        y = np.maximum(x, 0) + neg * a
        ry = None if rx is None else rx * slope
        if rp.get("weight") is not None:
            ry = _acc(ry, neg * self._shape(layer, x, rp["weight"]))
        return y, ry, (x, rx, neg, slope)

    def backward(self, layer, ctx, g, rg, p, rp, need_input):
        x, rx, neg, slope = ctx
        dx = g * slope
        dp = {"weight": self._reduce(layer, g * neg)}
        rdx = rda = None
        if rg is not None:
            rdx = rg * slope
            rda = self._reduce(layer, rg * neg)
        if rp.get("weight") is not None:
            rdx = _acc(rdx, g * self._shape(layer, x, rp["weight"]) * (x <= 0))
        if rx is not None:
            rda = _acc(rda, self._reduce(layer, g * rx * (x < 0)))
        return [dx], [rdx], dp, {"weight": rda}


# ------------------------------------------------------------------ pooling
class MaxPoolRule:
    """Locally linear: R{y} gathers R{x} at each window's argmax."""

    @staticmethod
    def _args(layer):
        return {"kernel_size": layer.kernel_size, "stride": layer.stride,
                "padding": layer.padding, "dilation": layer.dilation,
                "ceil_mode": layer.ceil_mode}

    def forward(self, layer, xs, rxs, p, rp, mode, state):
        (x,), (rx,) = xs, rxs
        pool = ops.max_pool2d if layer.nd == 2 else ops.max_pool1d
        y, idx = pool(x, return_indices=True, **self._args(layer))
        ry = None
        if rx is not None:
            n, c = x.shape[:2]
            flat_idx = idx.reshape(n, c, -1)
            outside = flat_idx < 0   # a window entirely in the padding
            ry = np.take_along_axis(rx.reshape(n, c, -1), np.where(outside, 0, flat_idx),
                                    axis=2)
            ry[outside] = 0
            ry = ry.reshape(y.shape)
        return y, ry, (x, idx)

    def backward(self, layer, ctx, g, rg, p, rp, need_input):
        x, idx = ctx
        bwd = ops.max_pool2d_backward if layer.nd == 2 else ops.max_pool1d_backward
        dx = bwd(g, x, indices=idx, **self._args(layer))
        rdx = None if rg is None else bwd(rg, x, indices=idx, **self._args(layer))
        return [dx], [rdx], {}, {}


class LinearMapRule:
    """Parameter-free layers linear in their inputs (pooling averages, reshapes,
    Add, Concat): the tangent goes through the layer itself, and so does R{g}.

    backward re-runs the training forward right before the layer's backward,
    so a layer object used by several nodes still sees its own inputs.
    """

    def forward(self, layer, xs, rxs, p, rp, mode, state):
        y = layer.forward(*xs)
        ry = None
        if any(r is not None for r in rxs):
            ry = layer.forward(*[np.zeros_like(x) if r is None else r
                                 for x, r in zip(xs, rxs)])
        return y, ry, xs

    def backward(self, layer, ctx, g, rg, p, rp, need_input):
        layer.forward(*ctx, training=True)
        dxs = layer.backward(g)
        rdxs = None if rg is None else layer.backward(rg)
        if len(ctx) == 1:
            dxs = [dxs]
            rdxs = [rdxs]
        elif rdxs is None:
            rdxs = [None] * len(ctx)
        return list(dxs), list(rdxs), {}, {}


class DropoutRule:
    """Eval: the identity. Train: one fixed mask per node and chunk (see module doc)."""

    def forward(self, layer, xs, rxs, p, rp, mode, state):
        (x,), (rx,) = xs, rxs
        if mode == "eval" or layer.p == 0.0:
            mask = None
        else:
            mask = state.get("mask")
            if mask is None or mask.shape != x.shape:
                keep = state["rng"].random(x.shape) >= layer.p
                mask = keep * (0.0 if layer.p == 1.0 else 1.0 / (1.0 - layer.p))
                state["mask"] = mask
        if mask is None:
            return x, rx, None
        return x * mask, (None if rx is None else rx * mask), mask

    def backward(self, layer, ctx, g, rg, p, rp, need_input):
        mask = ctx
        if mask is None:
            return [g], [rg], {}, {}
        return [g * mask], [None if rg is None else rg * mask], {}, {}


class BatchNormRule:
    """Eval: an affine map per channel. Train: batch statistics, differentiated
    through the mean and variance (running statistics untouched)."""

    @staticmethod
    def _as3(t):
        return None if t is None else t.reshape(t.shape[0], t.shape[1], -1)

    @staticmethod
    def _col(t):
        return None if t is None else t[None, :, None]

    def forward(self, layer, xs, rxs, p, rp, mode, state):
        (x,), (rx,) = xs, rxs
        x3, rx3 = self._as3(x), self._as3(rx)
        c = layer.num_features
        gamma = p["weight"] if layer.affine else np.ones(c)
        beta = p["bias"] if layer.affine else np.zeros(c)
        rgam, rbeta = self._col(rp.get("weight")), self._col(rp.get("bias"))
        eps = layer.eps
        if mode == "eval":
            mean = p["running_mean"]
            inv = 1.0 / np.sqrt(p["running_var"] + eps)
            xhat = (x3 - self._col(mean)) * self._col(inv)
            rxhat = None if rx3 is None else rx3 * self._col(inv)
            ctx = ("eval", xhat, rxhat, self._col(inv), None)
        else:
            m = x3.shape[0] * x3.shape[2]
            if m < 2:
                raise ValueError(f"BatchNorm in train mode needs more than one value per "
                                 f"channel, got input of shape {x.shape}")
            xc = x3 - x3.mean(axis=(0, 2), keepdims=True)
            inv = 1.0 / np.sqrt((xc * xc).mean(axis=(0, 2), keepdims=True) + eps)
            xhat = xc * inv
            rxhat = rinv = None
            if rx3 is not None:
                rxc = rx3 - rx3.mean(axis=(0, 2), keepdims=True)
                # R{inv} = -inv^3 mean(xc R{xc}) = -inv^2 mean(xhat R{xc})
                m_xhat_rxc = (xhat * rxc).mean(axis=(0, 2), keepdims=True)
                rinv = -inv * inv * m_xhat_rxc
                rxhat = inv * (rxc - xhat * m_xhat_rxc)
            ctx = ("train", xhat, rxhat, inv, rinv)
        g3 = self._col(gamma)
        y = xhat * g3 + self._col(beta)
        ry = None if rxhat is None else rxhat * g3
        if rgam is not None:
            ry = _acc(ry, xhat * rgam)
        if rbeta is not None:
            ry = rbeta + np.zeros_like(y) if ry is None else ry + rbeta
        return (y.reshape(x.shape), None if ry is None else ry.reshape(x.shape),
                ctx + (gamma, x.shape))

    def backward(self, layer, ctx, g, rg, p, rp, need_input):
        kind, xhat, rxhat, inv, rinv, gamma, shape = ctx
        g3, rg3 = self._as3(g), self._as3(rg)
        gam = self._col(gamma)
        rgam = self._col(rp.get("weight"))
        dxhat = g3 * gam
        rdxhat = None if rg3 is None else rg3 * gam
        if rgam is not None:
            rdxhat = _acc(rdxhat, g3 * rgam)
        if kind == "eval":
            dx = dxhat * inv
            rdx = None if rdxhat is None else rdxhat * inv
        else:
            mean = lambda t: t.mean(axis=(0, 2), keepdims=True)
            m_dxhat_xhat = mean(dxhat * xhat)
            core = dxhat - mean(dxhat) - xhat * m_dxhat_xhat
            dx = inv * core
            rdx = None
            if rxhat is not None:
                rdx = rinv * core + inv * (-rxhat * m_dxhat_xhat
                                           - xhat * mean(dxhat * rxhat))
            if rdxhat is not None:
                rdx = _acc(rdx, inv * (rdxhat - mean(rdxhat) - xhat * mean(rdxhat * xhat)))
        dp, rdp = {}, {}
        if layer.affine:
            dp["weight"] = (g3 * xhat).sum(axis=(0, 2))
            dp["bias"] = g3.sum(axis=(0, 2))
            rw = None if rg3 is None else (rg3 * xhat).sum(axis=(0, 2))
            if rxhat is not None:
                rw = _acc(rw, (g3 * rxhat).sum(axis=(0, 2)))
            rdp["weight"] = rw
            rdp["bias"] = None if rg3 is None else rg3.sum(axis=(0, 2))
        return ([dx.reshape(shape)], [None if rdx is None else rdx.reshape(shape)],
                dp, rdp)


# ------------------------------------------------------------------ fallback
class FiniteDifferenceRule:
    """Any layer: central differences of its forward/backward along the direction.

    Runs the layer's training forward (what its backward needs) on x +- h R{x}
    with parameters p +- h R{p}, and restores the parameters (and any state
    the layer keeps in them) afterwards. h = cbrt(eps) * scale.
    """

    exact = False

    @staticmethod
    def _step(xs, rxs, p, rp):
        big = max([1.0] + [float(np.abs(x).max()) for x in xs if np.size(x)] +
                  [float(np.abs(a).max()) for a in p.values() if a.size])
        dir_max = max([0.0] + [float(np.abs(r).max()) for r in rxs if r is not None] +
                      [float(np.abs(r).max()) for r in rp.values() if r is not None])
        if dir_max == 0.0:
            return 0.0
        return np.cbrt(np.finfo(np.float64).eps) * big / dir_max

    @staticmethod
    def _shifted(xs, rxs, h):
        return [x if r is None else x + h * r for x, r in zip(xs, rxs)]

    def _with_params(self, layer, p, rp, h, fn):
        saved = {k: v.copy() for k, v in layer.params.items()}
        try:
            for k, r in rp.items():
                if r is not None:
                    layer.params[k][...] = saved[k] + h * r
            return fn()
        finally:
            for k, v in saved.items():
                layer.params[k][...] = v

    def forward(self, layer, xs, rxs, p, rp, mode, state):
        y = layer.forward(*xs, training=mode == "train")
        h = self._step(xs, rxs, p, rp)
        ry = None
        if h:
            plus = self._with_params(layer, p, rp, h, lambda: layer.forward(
                *self._shifted(xs, rxs, h), training=mode == "train"))
            minus = self._with_params(layer, p, rp, -h, lambda: layer.forward(
                *self._shifted(xs, rxs, -h), training=mode == "train"))
            ry = (plus - minus) / (2 * h)
        return y, ry, (xs, rxs, h)

    def _grads(self, layer, xs, g, need_input):
        layer.forward(*xs, training=True)
        dxs = layer.backward(g)
        if len(xs) == 1:
            dxs = [dxs]
        return [np.array(d, dtype=np.float64) for d in dxs], \
            {k: np.array(v, dtype=np.float64) for k, v in layer.grads.items()}

    def backward(self, layer, ctx, g, rg, p, rp, need_input):
        xs, rxs, h = ctx
        dxs, dp = self._with_params(layer, p, {}, 0.0,
                                    lambda: self._grads(layer, xs, g, need_input))
        if not h:
            if rg is None:
                return dxs, [None] * len(xs), dp, {}
            h = np.cbrt(np.finfo(np.float64).eps) * max(1.0, float(np.abs(g).max())) / \
                max(float(np.abs(rg).max()), 1e-300)
        g_plus = g if rg is None else g + h * rg
        g_minus = g if rg is None else g - h * rg
        dxp, dpp = self._with_params(layer, p, rp, h, lambda: self._grads(
            layer, self._shifted(xs, rxs, h), g_plus, need_input))
        dxm, dpm = self._with_params(layer, p, rp, -h, lambda: self._grads(
            layer, self._shifted(xs, rxs, -h), g_minus, need_input))
        rdxs = [(a - b) / (2 * h) for a, b in zip(dxp, dxm)]
        rdp = {k: (dpp[k] - dpm[k]) / (2 * h) for k in dpp}
        return dxs, rdxs, dp, rdp


def _register_builtins():
    for cls in (nn.Conv1d, nn.Conv2d):
        register_rule(cls, ConvRule(), override=True)
    register_rule(nn.Linear, LinearRule(), override=True)
    for cls in (nn.ReLU, nn.LeakyReLU, nn.HardSigmoid):
        register_rule(cls, ElementwiseRule(), override=True)
    register_rule(nn.Sigmoid, ElementwiseRule(_sigmoid_d2), override=True)
    register_rule(nn.Tanh, ElementwiseRule(_tanh_d2), override=True)
    register_rule(nn.HardSwish, ElementwiseRule(_hardswish_d2), override=True)
    register_rule(nn.Softmax, SoftmaxRule(), override=True)
    register_rule(nn.PReLU, PReLURule(), override=True)
    for cls in (nn.MaxPool1d, nn.MaxPool2d):
        register_rule(cls, MaxPoolRule(), override=True)
    for cls in (nn.AvgPool1d, nn.AvgPool2d, nn.GlobalAvgPool, nn.Flatten, nn.Reshape,
                nn.Transpose, nn.Add, nn.Concat):
        register_rule(cls, LinearMapRule(), override=True)
    register_rule(nn.Dropout, DropoutRule(), override=True)
    for cls in (nn.BatchNorm1d, nn.BatchNorm2d):
        register_rule(cls, BatchNormRule(), override=True)


_register_builtins()


# ------------------------------------------------------------------ losses
def _ce_rule(fn):
    def rule(z, target, rz):
        loss, g = fn(z, target)
        if rz is None:
            return loss, g, None
        shifted = z - z.max(axis=1, keepdims=True)
        prob = np.exp(shifted)
        prob /= prob.sum(axis=1, keepdims=True)
        rprob = prob * (rz - (prob * rz).sum(axis=1, keepdims=True))
        count = z.size // z.shape[1]
        target = np.asarray(target)
        if target.dtype.kind in "fb":
            rprob = rprob * target.sum(axis=1, keepdims=True)
        return loss, g, rprob / count
    return rule


def _mse_rule(fn):
    def rule(z, target, rz):
        loss, g = fn(z, target)
        return loss, g, None if rz is None else rz * (2.0 / z.size)
    return rule


def _fd_loss_rule(fn):
    def rule(z, target, rz):
        loss, g = fn(z, target)
        if rz is None:
            return loss, g, None
        dmax = float(np.abs(rz).max())
        if dmax == 0.0:
            return loss, g, np.zeros_like(g)
        h = np.cbrt(np.finfo(np.float64).eps) * max(1.0, float(np.abs(z).max())) / dmax
        plus = np.asarray(fn(z + h * rz, target)[1], np.float64)
        minus = np.asarray(fn(z - h * rz, target)[1], np.float64)
        return loss, g, (plus - minus) / (2 * h)
    rule.exact = False
    return rule


def loss_rule(loss):
    """(loss function, rule(z, target, rz) -> (loss, grad, R{grad}), exact?) for a loss."""
    fn = nn.get_loss(loss)
    if fn is nn.softmax_cross_entropy:
        return fn, _ce_rule(fn), True
    if fn is nn.mse:
        return fn, _mse_rule(fn), True
    return fn, _fd_loss_rule(fn), False


# ------------------------------------------------------------------ the executor
class Program:
    """Forward/backward with tangents over a built (float64) graph, in topological order."""

    def __init__(self, graph, mode="eval", seed=0):
        if mode not in ("eval", "train"):
            raise ValueError(f"mode must be 'eval' or 'train', got {mode!r}")
        outputs = graph.output_names
        if len(outputs) != 1:
            raise ValueError(f"the loss needs a graph with one output, this one has "
                             f"{outputs}")
        self.graph = graph
        self.mode = mode
        self.seed = seed
        self.input_names = list(graph.input_names)
        self.output = outputs[0]
        self.steps = []
        for name in graph.topological_order():
            node = graph.nodes[name]
            need_input = any(i in graph.nodes for i in node.inputs)
            self.steps.append((name, node.layer, list(node.inputs), rule_for(node.layer),
                               need_input))
        self.inexact = [name for name, _, _, rule, _ in self.steps
                        if not getattr(rule, "exact", True)]
        self._states = {}

    def _state(self, name, chunk):
        key = (name, chunk)
        if key not in self._states:
            index = [s[0] for s in self.steps].index(name)
            self._states[key] = {"rng": np.random.default_rng([self.seed, index, chunk])}
        return self._states[key]

    def run(self, xs, target, lrule, direction=None, chunk=0):
        """(loss, {param: grad}, {param: R{grad}}) for one batch.

        direction: {full parameter name: tangent} or None (gradient only).
        """
        direction = direction or {}
        values = dict(zip(self.input_names, xs))
        tangents = {}
        ctxs = {}
        for name, layer, ins, rule, _ in self.steps:
            rp = {k: direction.get(f"{name}.{k}") for k in layer.params}
            rp = {k: v for k, v in rp.items() if v is not None}
            y, ry, ctx = rule.forward(layer, [values[i] for i in ins],
                                      [tangents.get(i) for i in ins], layer.params, rp,
                                      self.mode, self._state(name, chunk))
            values[name], ctxs[name] = y, (ctx, rp)
            if ry is not None:
                tangents[name] = ry
        loss, g, rg = lrule(values[self.output], target, tangents.get(self.output))
        values.clear()
        grads, rgrads = {self.output: g}, {self.output: rg}
        pgrad, prgrad = {}, {}
        for name, layer, ins, rule, need_input in reversed(self.steps):
            g = grads.pop(name, None)
            rg = rgrads.pop(name, None)
            ctx, rp = ctxs.pop(name)
            if g is None:
                continue
            dxs, rdxs, dp, rdp = rule.backward(layer, ctx, g, rg, layer.params, rp,
                                               need_input)
            for k, v in dp.items():
                pgrad[f"{name}.{k}"] = v
            for k, v in rdp.items():
                if v is not None:
                    prgrad[f"{name}.{k}"] = v
            for src, d, rd in zip(ins, dxs, rdxs):
                if src in self.graph.nodes and d is not None:
                    grads[src] = _acc(grads.get(src), d)
                    if rd is not None:
                        rgrads[src] = _acc(rgrads.get(src), rd)
        return loss, pgrad, prgrad
