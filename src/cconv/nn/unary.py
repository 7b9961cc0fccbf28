"""Element-wise functions of one activation, table-driven: Unary(fn, alpha, gamma).

Every entry of FUNCTIONS is (forward, derivative): forward(x, alpha, gamma)
and derivative(x, y, alpha, gamma) = dy/dx, given the input and the output.
Math ops (neg, exp, log, sqrt, reciprocal, erf, pow with a fixed exponent,
abs) sit beside the activations exporters write as their own operators (elu,
selu, softplus, softsign, mish, gelu exact and tanh-approximated).
"""
import numpy as np

from . import _util
from .base import Layer

_SELU_ALPHA = 1.6732632423543772
_SELU_GAMMA = 1.0507009873554805
_GELU_C = np.sqrt(2.0 / np.pi)


def _erf(x):
    # imported on first use: scipy's import would slow down every net that needs no erf
    from scipy import special

    return special.erf(x)


def _expit(x):
    return 0.5 * (1 + np.tanh(0.5 * x))   # the logistic function, no overflow


def _softplus(x):
    return np.logaddexp(x, 0)


def _tanh_gelu_inner(x):
    return _GELU_C * (x + 0.044715 * x ** 3)


def _mish_derivative(x, y, a, g):
    sp = _softplus(x)
    t = np.tanh(sp)
    return t + x * (1 - t * t) * _expit(x)


def _gelu_tanh_derivative(x, y, a, g):
    t = np.tanh(_tanh_gelu_inner(x))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _GELU_C * (1 + 3 * 0.044715 * x * x)


#: fn -> (forward(x, alpha, gamma), derivative(x, y, alpha, gamma)); None: no parameter used
FUNCTIONS = {
    "neg": (lambda x, a, g: -x, lambda x, y, a, g: np.full_like(x, -1)),
    "abs": (lambda x, a, g: np.abs(x), lambda x, y, a, g: np.sign(x)),
    "exp": (lambda x, a, g: np.exp(x), lambda x, y, a, g: y),
    "log": (lambda x, a, g: np.log(x), lambda x, y, a, g: 1 / x),
    "sqrt": (lambda x, a, g: np.sqrt(x), lambda x, y, a, g: 0.5 / y),
    "reciprocal": (lambda x, a, g: 1 / x, lambda x, y, a, g: -y * y),
    "erf": (lambda x, a, g: _erf(x),
            lambda x, y, a, g: (2 / np.sqrt(np.pi)) * np.exp(-x * x)),
    "pow": (lambda x, a, g: np.power(x, a), lambda x, y, a, g: a * np.power(x, a - 1)),
    "elu": (lambda x, a, g: np.where(x > 0, x, a * np.expm1(np.minimum(x, 0))),
            lambda x, y, a, g: np.where(x > 0, 1, y + a)),
    "selu": (lambda x, a, g: g * np.where(x > 0, x, a * np.expm1(np.minimum(x, 0))),
             lambda x, y, a, g: np.where(x > 0, g, y + g * a)),
    "softplus": (lambda x, a, g: _softplus(x), lambda x, y, a, g: _expit(x)),
    "softsign": (lambda x, a, g: x / (1 + np.abs(x)),
                 lambda x, y, a, g: 1 / (1 + np.abs(x)) ** 2),
    "mish": (lambda x, a, g: x * np.tanh(_softplus(x)), _mish_derivative),
    "gelu": (lambda x, a, g: 0.5 * x * (1 + _erf(x / np.sqrt(2))),
             lambda x, y, a, g: 0.5 * (1 + _erf(x / np.sqrt(2)))
             + x * np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)),
    "gelu_tanh": (lambda x, a, g: 0.5 * x * (1 + np.tanh(_tanh_gelu_inner(x))),
                  _gelu_tanh_derivative),
}

#: fn -> default (alpha, gamma); functions absent here take neither
DEFAULTS = {"pow": (2.0, None), "elu": (1.0, None), "selu": (_SELU_ALPHA, _SELU_GAMMA)}


class Unary(Layer):
    """y = fn(x) element-wise, fn a key of FUNCTIONS; any per-sample shape.

    alpha: pow's exponent, elu's and selu's alpha; gamma: selu's scale.
    Domain errors (log or sqrt of a negative) give NaN, as numpy and ONNX do.
    """

    def __init__(self, fn, alpha=None, gamma=None):
        super().__init__()
        if fn not in FUNCTIONS:
            raise ValueError(f"fn must be one of {sorted(FUNCTIONS)}, got {fn!r}")
        self.fn = fn
        default_alpha, default_gamma = DEFAULTS.get(fn, (None, None))
        for name, value, default in (("alpha", alpha, default_alpha),
                                     ("gamma", gamma, default_gamma)):
            if value is not None and default is None:
                raise ValueError(f"Unary({fn!r}) takes no {name}, got {name}={value!r}")
            setattr(self, name, None if default is None else
                    _util.check_float(name, default if value is None else value))
        self._saved = None

    def get_config(self):
        config = {"fn": self.fn}
        if self.alpha is not None:
            config["alpha"] = self.alpha
        if self.gamma is not None:
            config["gamma"] = self.gamma
        return config

    def output_shape(self, input_shapes):
        self.check_num_inputs(input_shapes)
        return _util.as_shapes(input_shapes)[0]

    def build(self, input_shapes, rng=None):
        self.output_shape(input_shapes)
        super().build(input_shapes, rng)

    def forward(self, x, training=False):
        x = np.asarray(x)
        if x.dtype.kind != "f":
            x = x.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            y = np.asarray(FUNCTIONS[self.fn][0](x, self.alpha, self.gamma), dtype=x.dtype)
        if training:
            self._saved = (x, y)
        return y

    def backward(self, grad_out):
        x, y = _util.saved(self)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            d = FUNCTIONS[self.fn][1](x, y, self.alpha, self.gamma)
        return np.asarray(grad_out * d, dtype=x.dtype)
