"""Broadcasting layers of several activations: variadic Sum/Mean/Max/Min, Pow, masks, Where.

As in elementwise.py, per-sample axes broadcast like numpy (aligned on the
right); the batch axes broadcast too where one input has batch 1 (ONNX files
that feed a batch-1 tensor beside a batch-N one). Comparisons give 0/1 masks
in the float dtype and pass no gradient; Where passes none to its condition.
"""
import numpy as np

from . import _util
from .base import Layer
from .elementwise import _broadcast, _float, _unbroadcast


def _aligned(name, xs):
    """Inputs reshaped to one rank (batch first), checking that batches broadcast."""
    xs = [_float(x) for x in xs]
    batches = {x.shape[0] for x in xs} - {1}
    if len(batches) > 1:
        raise ValueError(f"{name}: inputs have batch sizes {[x.shape[0] for x in xs]}")
    _broadcast(name, [x.shape[1:] for x in xs])
    r = max(x.ndim for x in xs)
    return [x.reshape((x.shape[0],) + (1,) * (r - x.ndim) + x.shape[1:]) for x in xs]


class _Broadcasting(Layer):
    type_name = None

    def __init__(self):
        super().__init__()
        self._saved = None

    def output_shape(self, input_shapes):
        self.check_num_inputs(input_shapes)
        return _broadcast(self.type_name, _util.as_shapes(input_shapes))

    def build(self, input_shapes, rng=None):
        self.output_shape(input_shapes)
        super().build(input_shapes, rng)


class Nary(_Broadcasting):
    """Element-wise sum, mean, max or min of two or more broadcasting inputs (ONNX Sum...).

    max/min send the gradient to the first input holding the extreme value.
    """
    num_inputs = -1
    OPS = ("sum", "mean", "max", "min")

    def __init__(self, op):
        super().__init__()
        if op not in self.OPS:
            raise ValueError(f"op must be one of {self.OPS}, got {op!r}")
        self.op = op

    def get_config(self):
        return {"op": self.op}

    def forward(self, *inputs, training=False):
        self.check_num_inputs(inputs)
        xs = _aligned(self.type_name, inputs)
        if self.op in ("sum", "mean"):
            y = xs[0] + xs[1]
            for x in xs[2:]:
                y = y + x
            if self.op == "mean":
                y = y / len(xs)
        else:
            pick = np.maximum if self.op == "max" else np.minimum
            y = pick(xs[0], xs[1])
            for x in xs[2:]:
                y = pick(y, x)
        if training:
            self._saved = (xs, y, [np.shape(x) for x in inputs])
        return y

    def backward(self, grad_out):
        xs, y, shapes = _util.saved(self)
        g = np.asarray(grad_out)
        if self.op in ("sum", "mean"):
            g = g / len(xs) if self.op == "mean" else g
            return tuple(_unbroadcast(g, x.shape).reshape(s) for x, s in zip(xs, shapes))
        taken = np.zeros(y.shape, bool)
        out = []
        for x, s in zip(xs, shapes):
            # the first input equal to the extreme takes the gradient, so ties count once
            mine = (x == y) & ~taken
            taken |= mine
            out.append(_unbroadcast(g * mine, x.shape).reshape(s))
        return tuple(out)


class Pow(_Broadcasting):
    """a ** b of two broadcasting activations (a fixed exponent is Unary('pow'))."""
    num_inputs = 2

    def forward(self, a, b, training=False):
        shapes = (np.shape(a), np.shape(b))
        a, b = _aligned(self.type_name, [a, b])
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.power(a, b)
        if training:
            self._saved = (a, b, y, shapes)
        return y

    def backward(self, grad_out):
        a, b, y, (sa, sb) = _util.saved(self)
        g = np.asarray(grad_out)
        with np.errstate(divide="ignore", invalid="ignore"):
            ga = g * b * np.power(a, b - 1)
            # d/db a^b = a^b log a; taken as 0 where a^b is 0 (a = 0, b > 0)
            gb = g * np.where(y == 0, 0, y * np.log(np.abs(np.where(a == 0, 1, a))))
        return _unbroadcast(ga, a.shape).reshape(sa), _unbroadcast(gb, b.shape).reshape(sb)


_COMPARISONS = {"equal": np.equal, "less": np.less, "greater": np.greater,
                "less_equal": np.less_equal, "greater_equal": np.greater_equal}


class Compare(_Broadcasting):
    """A 0/1 mask of a == b, a < b, a > b, a <= b or a >= b; no gradient flows through it.

    With value (a fixed number or array), one input is compared with it: x op value.
    """
    num_inputs = 2

    def __init__(self, op, value=None):
        super().__init__()
        if op not in _COMPARISONS:
            raise ValueError(f"op must be one of {sorted(_COMPARISONS)}, got {op!r}")
        self.op = op
        self.value = None
        if value is not None:
            self.value = np.asarray(value, np.float64)
            if not np.all(np.isfinite(self.value)):
                raise ValueError(f"value must be finite numbers, got {value!r}")
            self.num_inputs = 1

    def get_config(self):
        config = {"op": self.op}
        if self.value is not None:
            config["value"] = self.value.tolist()
        return config

    def output_shape(self, input_shapes):
        if self.value is None:
            return super().output_shape(input_shapes)
        self.check_num_inputs(input_shapes)
        return _broadcast(self.type_name, _util.as_shapes(input_shapes) + [self.value.shape])

    def forward(self, a, b=None, training=False):
        if self.value is not None:
            a = _float(a)
            b = self.value.astype(a.dtype).reshape((1,) + self.value.shape)
        a2, b2 = _aligned(self.type_name, [a, b])
        y = _COMPARISONS[self.op](a2, b2).astype(np.result_type(a2, b2))
        if training:
            self._saved = (np.shape(a), np.shape(b))
        return y

    def backward(self, grad_out):
        sa, sb = _util.saved(self)
        if self.value is not None:
            return np.zeros(sa, grad_out.dtype)
        return np.zeros(sa, grad_out.dtype), np.zeros(sb, grad_out.dtype)


class Where(_Broadcasting):
    """x where the condition (a mask: non-zero is true) holds, else y; all three broadcast.

    Inputs are (condition, x, y), as ONNX orders them; the condition gets a zero
    gradient. constants fixes some of them to per-sample arrays ({"condition": ...,
    "x": ..., "y": ...}; -inf allowed, as in masked_fill(mask, -inf)): the layer then
    takes the others, in that order.
    """
    ROLES = ("condition", "x", "y")

    def __init__(self, constants=None):
        super().__init__()
        constants = dict(constants or {})
        unknown = set(constants) - set(self.ROLES)
        if unknown:
            raise ValueError(f"constants may name {self.ROLES}, got {sorted(unknown)}")
        self.constants = {k: np.asarray(v, np.float64) for k, v in constants.items()}
        if any(np.isnan(v).any() for v in self.constants.values()):
            raise ValueError("constants must not hold NaN")
        self.num_inputs = 3 - len(self.constants)
        if self.num_inputs < 1:
            raise ValueError("Where needs at least one input that is not a constant")

    def get_config(self):
        if not self.constants:
            return {}
        return {"constants": {k: v.tolist() for k, v in self.constants.items()}}

    def _triple(self, items, batched):
        """(condition, x, y) from the inputs (per-sample shapes or arrays) and the constants."""
        items, out = list(items), []
        for role in self.ROLES:
            if role in self.constants:
                c = self.constants[role]
                out.append(c.reshape((1,) + c.shape) if batched else c.shape)
            else:
                out.append(items.pop(0))
        return out

    def output_shape(self, input_shapes):
        self.check_num_inputs(input_shapes)
        return _broadcast(self.type_name, self._triple(_util.as_shapes(input_shapes), False))

    def forward(self, *inputs, training=False):
        self.check_num_inputs(inputs)
        dtype = np.result_type(*[_float(x) for x in inputs])
        cond, x, y = self._triple(inputs, True)
        c, x2, y2 = _aligned(self.type_name, [cond, x, y])
        mask = c != 0
        out = np.where(mask, x2, y2).astype(dtype, copy=False)
        if training:
            self._saved = (mask, x2.shape, y2.shape, [np.shape(v) for v in inputs])
        return out

    def backward(self, grad_out):
        mask, ax, ay, shapes = _util.saved(self)
        g = np.asarray(grad_out)
        grads = {"condition": None,
                 "x": _unbroadcast(np.where(mask, g, 0), ax).astype(g.dtype),
                 "y": _unbroadcast(np.where(mask, 0, g), ay).astype(g.dtype)}
        roles = [r for r in self.ROLES if r not in self.constants]
        out = tuple(np.zeros(s, g.dtype) if r == "condition" else grads[r].reshape(s)
                    for r, s in zip(roles, shapes))
        return out if len(out) > 1 else out[0]
