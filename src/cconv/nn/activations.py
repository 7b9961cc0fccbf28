"""Element-wise activations (torch's definitions) and Softmax."""
import numpy as np

from . import _util
from .base import Layer


class _Activation(Layer):
    """A parameterless element-wise layer: any per-sample shape, output like the input."""
    type_name = None

    def __init__(self):
        super().__init__()
        self._saved = None

    def output_shape(self, input_shapes):
        self.check_num_inputs(input_shapes)
        return _util.as_shapes(input_shapes)[0]

    def param_shapes(self, input_shapes):
        self.output_shape(input_shapes)
        return {}

    def build(self, input_shapes, rng=None):
        self.output_shape(input_shapes)
        super().build(input_shapes, rng)


def _dtype_of(x):
    # native byte order: ufuncs refuse a big-endian dtype= argument
    return x.dtype.newbyteorder("=") if x.dtype.kind == "f" else np.dtype(np.float64)


try:  # one-pass C loops (cconv._plan); numpy's ufuncs where it is absent or refuses
    from .._plan import relu as _relu_c, relu_backward as _relu_backward_c
except ImportError:  # pragma: no cover - a source tree without the build
    _relu_c = _relu_backward_c = None


class ReLU(_Activation):
    def forward(self, x, training=False):
        x = np.asarray(x)
        y = None
        if _relu_c is not None and x.dtype.kind == "f":
            y = np.empty(x.shape, x.dtype)
            try:
                _relu_c(x, y)   # 2x numpy's maximum, which pays for NaN handling
            except (TypeError, ValueError):   # float16, strided, byte-swapped
                y = None
        if y is None:   # (the scalar type: a byte-swapped dtype is refused here)
            y = np.maximum(x, 0, dtype=np.dtype(_dtype_of(x)).type)
        if training:
            self._saved = (y,)  # y > 0 exactly where x > 0
        return y

    def backward(self, grad_out):
        (y,) = _util.saved(self)
        if _relu_backward_c is not None and isinstance(grad_out, np.ndarray) \
                and grad_out.dtype == y.dtype and grad_out.shape == y.shape:
            out = np.empty(y.shape, y.dtype)
            try:
                _relu_backward_c(grad_out, y, out)   # one pass, no mask array
                return out
            except (TypeError, ValueError):
                pass
        # arithmetic on the mask: np.where is several times slower here
        return grad_out * (y > 0)


class LeakyReLU(_Activation):
    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = _util.check_float("negative_slope", negative_slope)

    def get_config(self):
        return {"negative_slope": self.negative_slope}

    def forward(self, x, training=False):
        x = np.asarray(x)
        x = x.astype(_dtype_of(x), copy=False)
        y = np.maximum(x, 0)
        y += np.minimum(x, 0) * x.dtype.type(self.negative_slope)
        if training:
            self._saved = (x,)
        return y

    def backward(self, grad_out):
        (x,) = _util.saved(self)
        s = x.dtype.type(self.negative_slope)
        slope = (x > 0).astype(x.dtype)  # 1 where x > 0, negative_slope elsewhere
        slope *= 1 - s
        slope += s
        return grad_out * slope


class PReLU(_Activation):
    """LeakyReLU with a learnable slope per channel (axis 1) or one shared slope.

    num_parameters: 1 (shared) or the number of channels of the input.
    """

    def __init__(self, num_parameters=1, init=0.25):
        super().__init__()
        self.num_parameters = _util.check_int("num_parameters", num_parameters, 1)
        self.init = _util.check_float("init", init)

    def get_config(self):
        return {"num_parameters": self.num_parameters, "init": self.init}

    def output_shape(self, input_shapes):
        shape = super().output_shape(input_shapes)
        if self.num_parameters != 1 and (len(shape) < 1 or shape[0] != self.num_parameters):
            raise ValueError(f"PReLU with num_parameters={self.num_parameters} needs that "
                             f"many channels (per-sample shape (C, ...)), got {shape}")
        return shape

    def param_shapes(self, input_shapes):
        self.output_shape(input_shapes)
        return {"weight": (self.num_parameters,)}

    def build(self, input_shapes, rng=None):
        self.output_shape(input_shapes)
        self.params, self.grads, self.trainable = {}, {}, {}
        self.add_param("weight", np.full(self.num_parameters, self.init, np.float32))
        super().build(input_shapes, rng)

    def _slope(self, ndim):
        w = self.params["weight"]
        if self.num_parameters == 1:
            return w.reshape(())
        return w.reshape((1, -1) + (1,) * (ndim - 2))

    def forward(self, x, training=False):
        _util.need_built(self)
        x = np.asarray(x)
        a = self._slope(x.ndim)
        y = np.maximum(x, 0) + np.minimum(x, 0) * a
        if training:
            self._saved = (x,)
        return y

    def backward(self, grad_out):
        (x,) = _util.saved(self)
        grad_out = np.asarray(grad_out)
        a = self._slope(x.ndim)
        dx = grad_out * (a + (1 - a) * (x > 0))
        if self.trainable["weight"]:
            ga = grad_out * np.minimum(x, 0)
            axes = tuple(i for i in range(x.ndim) if i != 1 or self.num_parameters == 1)
            _util.set_grad(self, "weight", ga.sum(axis=axes).reshape(self.num_parameters))
        else:
            _util.set_grad(self, "weight", None)
        return dx


class Sigmoid(_Activation):
    def forward(self, x, training=False):
        x = np.asarray(x)
        x = x.astype(_dtype_of(x), copy=False)
        # tanh form: no overflow for large |x|
        y = np.tanh(x * 0.5)
        y += 1
        y *= 0.5
        if training:
            self._saved = (y,)
        return y

    def backward(self, grad_out):
        (y,) = _util.saved(self)
        return grad_out * y * (1 - y)


class Tanh(_Activation):
    def forward(self, x, training=False):
        x = np.asarray(x)
        y = np.tanh(x, dtype=_dtype_of(x))
        if training:
            self._saved = (y,)
        return y

    def backward(self, grad_out):
        (y,) = _util.saved(self)
        return grad_out * (1 - y * y)


class HardSigmoid(_Activation):
    """relu6(x + 3) / 6, as torch.nn.Hardsigmoid."""

    def forward(self, x, training=False):
        x = np.asarray(x)
        x = x.astype(_dtype_of(x), copy=False)
        y = np.clip(x + 3, 0, 6) / 6
        if training:
            self._saved = (x,)
        return y

    def backward(self, grad_out):
        (x,) = _util.saved(self)
        inside = (x > -3) & (x < 3)
        return grad_out * inside * (1 / 6)


class HardSwish(_Activation):
    """x * relu6(x + 3) / 6, as torch.nn.Hardswish."""

    def forward(self, x, training=False):
        x = np.asarray(x)
        x = x.astype(_dtype_of(x), copy=False)
        y = x * (np.clip(x + 3, 0, 6) / 6)
        if training:
            self._saved = (x,)
        return y

    def backward(self, grad_out):
        (x,) = _util.saved(self)
        # torch's choice at the kinks: slope x/3 + 1/2 inside (-3, 3), 0 at or below -3
        d = (x / 3 + 0.5) * ((x > -3) & (x < 3))
        d += x >= 3
        return grad_out * d


class _SoftmaxLike(_Activation):
    """Softmax-shaped layers: one normalisation along axis (or all axes from it, flatten)."""
    type_name = None

    def __init__(self, axis=1, flatten=False):
        super().__init__()
        self.axis = _util.check_int("axis", axis)
        if self.axis == 0:
            raise ValueError("axis must not be the batch axis 0")
        self.flatten = _util.check_bool("flatten", flatten)

    def get_config(self):
        config = {"axis": self.axis}
        if self.flatten:
            config["flatten"] = True
        return config

    def output_shape(self, input_shapes):
        shape = super().output_shape(input_shapes)
        _util.check_axis("axis", self.axis, len(shape) + 1)
        return shape

    def _rows(self, x):
        """x with the softmax axis last (flattened from axis on with flatten), and that axis."""
        axis = _util.check_axis("axis", self.axis, x.ndim)
        if self.flatten:
            return x.reshape(x.shape[:axis] + (-1,)), -1
        return x, axis

    def forward(self, x, training=False):
        x = np.asarray(x)
        xr, axis = self._rows(x)
        z = xr - xr.max(axis=axis, keepdims=True)
        y = self._from_shifted(z, axis, _dtype_of(x)).reshape(x.shape)
        if training:
            self._saved = (y,)
        return y

    def _from_shifted(self, z, axis, dtype):
        y = np.exp(z, dtype=dtype)
        y /= y.sum(axis=axis, keepdims=True)
        return y

    def backward(self, grad_out):
        (y,) = _util.saved(self)
        yr, axis = self._rows(y)
        gy = np.asarray(grad_out).reshape(yr.shape) * yr
        return (gy - yr * gy.sum(axis=axis, keepdims=True)).reshape(y.shape)


class Softmax(_SoftmaxLike):
    """Softmax along axis (batch axis included, so axis=1 is the channel axis).

    flatten=True takes it over all axes from axis on together, as ONNX Softmax
    before opset 13 does (the input seen as 2-D, split at axis).
    """


# not a Softmax subclass: rules keyed by class (the R-operator's) must not take it for one
class LogSoftmax(_SoftmaxLike):
    """log(Softmax(x)) along axis, computed stably; flatten as Softmax's."""

    def _from_shifted(self, z, axis, dtype):
        z = z.astype(dtype, copy=False)
        return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))

    def backward(self, grad_out):
        (y,) = _util.saved(self)
        yr, axis = self._rows(y)
        g = np.asarray(grad_out).reshape(yr.shape)
        return (g - np.exp(yr) * g.sum(axis=axis, keepdims=True)).reshape(y.shape)
