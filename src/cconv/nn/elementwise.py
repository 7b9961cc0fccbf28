"""Element-wise arithmetic with numpy broadcasting, Clip, and MatMul.

Broadcasting is per sample: the batch axis stays first and every input
keeps its own batch, so (C, H, W) * (C, 1, 1) broadcasts like numpy's
per-sample shapes (squeeze-excite), and a lower-rank sample aligns on the
right. ConstantOp applies one operand that is a fixed array (an ONNX
initializer, HardSigmoid's 1/6), stored as a parameter so it is saved with
the weights and may be trained.
"""
import numpy as np

from .. import ops
from . import _util
from .base import Layer

_OPS = ("add", "sub", "mul", "div")


def _broadcast(name, shapes):
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*shapes))
    except ValueError:
        raise ValueError(f"{name}: per-sample shapes {list(shapes)} do not broadcast") from None


def _unbroadcast(grad, shape):
    """Sum grad over the axes that broadcasting expanded, back to shape."""
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, d in enumerate(shape) if d == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return np.ascontiguousarray(grad.reshape(shape))


def _float(x):
    x = np.asarray(x)
    return x if x.dtype.kind == "f" else x.astype(np.float64)


def _apply(op, a, b):
    if op == "add":
        return a + b
    if op == "sub":
        return a - b
    if op == "mul":
        return a * b
    return a / b


def _grads(op, g, a, b):
    """(dL/da, dL/db) of a op b, before unbroadcasting."""
    if op == "add":
        return g, g
    if op == "sub":
        return g, -g
    if op == "mul":
        return g * b, g * a
    q = g / b
    return q, -q * a / b


class _Binary(Layer):
    """Two inputs combined element-wise with per-sample broadcasting."""
    num_inputs = 2
    op = None
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

    def forward(self, a, b, training=False):
        a, b = _float(a), _float(b)
        # a batch of 1 broadcasts against any batch (ONNX's batch-1 constants-as-inputs)
        if a.shape[0] != b.shape[0] and 1 not in (a.shape[0], b.shape[0]):
            raise ValueError(f"{self.type_name}: inputs have batch sizes {a.shape[0]} and "
                             f"{b.shape[0]}")
        r = max(a.ndim, b.ndim)
        # align per-sample axes on the right, the batch axis stays first
        a2 = a.reshape((a.shape[0],) + (1,) * (r - a.ndim) + a.shape[1:])
        b2 = b.reshape((b.shape[0],) + (1,) * (r - b.ndim) + b.shape[1:])
        _broadcast(self.type_name, [a.shape[1:], b.shape[1:]])
        y = _apply(self.op, a2, b2)
        if training:
            self._saved = (a2, b2, a.shape, b.shape)
        return y

    def backward(self, grad_out):
        a2, b2, sa, sb = _util.saved(self)
        ga, gb = _grads(self.op, np.asarray(grad_out), a2, b2)
        return (_unbroadcast(ga, a2.shape).reshape(sa),
                _unbroadcast(gb, b2.shape).reshape(sb))


class BroadcastAdd(_Binary):
    """a + b with per-sample broadcasting (Add needs equal shapes)."""
    op = "add"


class Sub(_Binary):
    """a - b with per-sample broadcasting."""
    op = "sub"


class Mul(_Binary):
    """a * b with per-sample broadcasting (e.g. squeeze-excite's (C, H, W) * (C, 1, 1))."""
    op = "mul"


class Div(_Binary):
    """a / b with per-sample broadcasting."""
    op = "div"


class ConstantOp(Layer):
    """x op c (or c op x with reverse=True) for a fixed array c, op in add/sub/mul/div.

    c is the parameter "value" of shape `shape`, broadcast against each sample
    (aligned on the right); it is a buffer unless trainable=True. value gives
    its initial contents (default: 0 for add/sub, 1 for mul/div); the config
    records only its shape, the contents travel with the weights.
    """

    def __init__(self, op, shape=None, reverse=False, trainable=False, value=None):
        super().__init__()
        if op not in _OPS:
            raise ValueError(f"op must be one of {_OPS}, got {op!r}")
        self.op = op
        if value is not None:
            value = np.asarray(value, dtype=np.float64)
            if value.dtype.kind != "f" or not np.all(np.isfinite(value)):
                raise ValueError(f"value must be finite numbers, got {value!r}")
        if shape is None:
            shape = () if value is None else value.shape
        if not isinstance(shape, (tuple, list)):
            raise ValueError(f"shape must be a tuple of ints, got {shape!r}")
        self.shape = tuple(_util.check_int("shape", d, 1) for d in shape)
        if value is not None and value.shape != self.shape:
            raise ValueError(f"value has shape {value.shape}, expected shape={self.shape}")
        self.reverse = _util.check_bool("reverse", reverse)
        self.is_trainable = _util.check_bool("trainable", trainable)
        self._initial = value
        self._saved = None

    def get_config(self):
        return {"op": self.op, "shape": list(self.shape), "reverse": self.reverse,
                "trainable": self.is_trainable}

    def output_shape(self, input_shapes):
        self.check_num_inputs(input_shapes)
        shape = _util.as_shapes(input_shapes)[0]
        if len(self.shape) > len(shape):
            raise ValueError(f"ConstantOp: the constant's shape {self.shape} has more axes "
                             f"than the per-sample input {shape}")
        return _broadcast("ConstantOp", [shape, self.shape])

    def param_shapes(self, input_shapes):
        self.output_shape(input_shapes)
        return {"value": self.shape or (1,)}

    def build(self, input_shapes, rng=None):
        self.output_shape(input_shapes)
        self.params, self.grads, self.trainable = {}, {}, {}
        # a scalar is stored with shape (1,): weight files hold no 0-d tensors
        shape = self.shape or (1,)
        if self._initial is not None:
            value = self._initial.astype(np.float32).reshape(shape)
        else:
            value = np.full(shape, 1.0 if self.op in ("mul", "div") else 0.0, np.float32)
        self.add_param("value", value, trainable=self.is_trainable)
        super().build(input_shapes, rng)

    def forward(self, x, training=False):
        _util.need_built(self)
        x = _float(x)
        c = self.params["value"]
        if len(self.shape) > x.ndim - 1:
            raise ValueError(f"ConstantOp: input of shape {x.shape} has fewer per-sample "
                             f"axes than the constant {c.shape}")
        c = c.astype(x.dtype, copy=False)
        y = _apply(self.op, c, x) if self.reverse else _apply(self.op, x, c)
        if training:
            self._saved = (x, c)
        return y

    def backward(self, grad_out):
        x, c = _util.saved(self)
        g = np.asarray(grad_out)
        if self.reverse:
            gc, gx = _grads(self.op, g, c, x)
        else:
            gx, gc = _grads(self.op, g, x, c)
        if self.trainable["value"]:
            _util.set_grad(self, "value", _unbroadcast(gc, c.shape))
        else:
            _util.set_grad(self, "value", None)
        return _unbroadcast(gx, x.shape)


class Clip(Layer):
    """min(max(x, min), max); either bound may be None. Clip(0, 6) is ReLU6.

    The gradient passes where min <= x <= max, as torch.clamp's does.
    """

    def __init__(self, min=None, max=None):
        super().__init__()
        self.min = None if min is None else _util.check_float("min", min)
        self.max = None if max is None else _util.check_float("max", max)
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min must be <= max, got min={self.min}, max={self.max}")
        self._saved = None

    def get_config(self):
        return {"min": self.min, "max": self.max}

    def output_shape(self, input_shapes):
        self.check_num_inputs(input_shapes)
        return _util.as_shapes(input_shapes)[0]

    def build(self, input_shapes, rng=None):
        self.output_shape(input_shapes)
        super().build(input_shapes, rng)

    def forward(self, x, training=False):
        x = _float(x)
        y = np.clip(x, self.min, self.max) if (self.min, self.max) != (None, None) else x.copy()
        if training:
            inside = np.ones(x.shape, bool)
            if self.min is not None:
                inside &= x >= self.min
            if self.max is not None:
                inside &= x <= self.max
            self._saved = (inside,)
        return y

    def backward(self, grad_out):
        (inside,) = _util.saved(self)
        return grad_out * inside


class MatMul(Layer):
    """Per-sample matrix product a @ b of two inputs, samples (..., m, k) and (..., k, n).

    Leading per-sample axes broadcast as in numpy.matmul. (A product with a
    fixed matrix is a Linear layer.)
    """
    num_inputs = 2

    def __init__(self):
        super().__init__()
        self._saved = None

    def output_shape(self, input_shapes):
        self.check_num_inputs(input_shapes)
        sa, sb = _util.as_shapes(input_shapes)
        if len(sa) < 2 or len(sb) < 2 or sa[-1] != sb[-2]:
            raise ValueError(f"MatMul needs per-sample shapes (..., m, k) and (..., k, n), "
                             f"got {sa} and {sb}")
        return _broadcast("MatMul", [sa[:-2], sb[:-2]]) + (sa[-2], sb[-1])

    def build(self, input_shapes, rng=None):
        self.output_shape(input_shapes)
        super().build(input_shapes, rng)

    def forward(self, a, b, training=False):
        a, b = _float(a), _float(b)
        self.output_shape([a.shape[1:], b.shape[1:]])
        r = max(a.ndim, b.ndim)
        a2 = a.reshape((a.shape[0],) + (1,) * (r - a.ndim) + a.shape[1:])
        b2 = b.reshape((b.shape[0],) + (1,) * (r - b.ndim) + b.shape[1:])
        y = ops.matmul(a2, b2)   # cconv's GEMM: never a second (OpenBLAS) thread pool
        if training:
            self._saved = (a2, b2, a.shape, b.shape)
        return y

    def backward(self, grad_out):
        a2, b2, sa, sb = _util.saved(self)
        g = np.asarray(grad_out)
        ga = ops.matmul(g, np.swapaxes(b2, -1, -2))
        gb = ops.matmul(np.swapaxes(a2, -1, -2), g)
        return (_unbroadcast(ga, a2.shape).reshape(sa),
                _unbroadcast(gb, b2.shape).reshape(sb))
