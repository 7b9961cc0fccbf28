"""Swish with a learnable slope per channel: y = x * sigmoid(beta_c * x)."""
import numpy as np

from cconv.nn.base import Layer


def _sigmoid(z):
    # tanh form: no overflow warning for large |z|
    return 0.5 * (1.0 + np.tanh(0.5 * z))


class Swish(Layer):
    """Swish / SiLU with beta learned per channel (axis 1 of the input).

    beta = 1 is SiLU; beta -> infinity approaches ReLU; beta = 0 is x / 2.
    Works on (N, C), (N, C, L) and (N, C, H, W) inputs.
    """

    type_name = "Swish"

    def __init__(self, beta=1.0):
        super().__init__()
        self.beta_init = float(beta)
        self._saved = None

    def get_config(self):
        return {"beta": self.beta_init}

    def output_shape(self, input_shapes):
        self.check_num_inputs(input_shapes)
        shape = tuple(int(d) for d in input_shapes[0])
        if len(shape) < 1:
            raise ValueError(f"Swish needs a per-sample shape (C, ...), got {shape}")
        return shape

    def build(self, input_shapes, rng=None):
        channels = self.output_shape(input_shapes)[0]
        self.params, self.grads, self.trainable = {}, {}, {}
        self.add_param("beta", np.full(channels, self.beta_init, np.float32))
        super().build(input_shapes, rng)

    def _beta(self, x):
        return self.params["beta"].reshape((1, -1) + (1,) * (x.ndim - 2)).astype(x.dtype)

    def forward(self, x, training=False):
        if not self.built:
            raise RuntimeError("Swish: call build() (or build the net) before forward()")
        x = np.asarray(x)
        s = _sigmoid(self._beta(x) * x)
        if training:
            self._saved = (x, s)
        return x * s

    def backward(self, grad_out):
        if self._saved is None:
            raise RuntimeError("Swish.backward needs a forward(..., training=True) first")
        x, s = self._saved
        beta = self._beta(x)
        ds = s * (1 - s)                       # sigmoid'(beta * x)
        dx = grad_out * (s + beta * x * ds)
        grad = self.grads["beta"]
        if self.trainable["beta"]:
            dbeta = grad_out * x * x * ds      # d/dbeta of x * sigmoid(beta * x)
            # written in place: an optimizer may hold on to this array
            np.copyto(grad, dbeta.sum(axis=tuple(i for i in range(x.ndim) if i != 1)),
                      casting="unsafe")
        else:
            grad.fill(0)
        return dx
