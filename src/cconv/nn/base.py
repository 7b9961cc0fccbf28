"""The Layer base class: the contract every built-in and plugin layer follows.

A layer is a plain object with hyperparameters (its config), parameters
created by `build` from the per-sample input shapes, and explicit `forward` /
`backward` methods. There is no tape: in training mode `forward` keeps what
`backward` needs on the layer; in inference mode it keeps nothing, so one
layer object may serve several threads at once.

Shapes given to `build` and `output_shape` exclude the batch dimension;
arrays given to `forward` include it (NCHW / NCL / (N, features)).
"""
import numpy as np


class Layer:
    #: Name under which the layer is registered and written in configs.
    type_name = None
    #: Number of inputs the layer takes; -1 means two or more (Add, Concat).
    num_inputs = 1
    #: True when backward() accepts need_input_grad=False and then skips the
    #: input gradient (returning None): the graph uses it for layers that read
    #: only the network's inputs, whose gradient nobody needs in training.
    can_skip_input_grad = False

    def __init__(self):
        self.params = {}      # name -> array, created by build()
        self.grads = {}       # name -> array, same keys, overwritten by backward()
        self.trainable = {}   # name -> bool; frozen parameters get no update at all
        self.built = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "type_name" not in cls.__dict__ or cls.__dict__["type_name"] is None:
            cls.type_name = cls.__name__

    # ---- construction ----
    def build(self, input_shapes, rng=None):
        """Create parameters for these per-sample input shapes (a list, one per input).

        rng is a numpy Generator used by the initialisers (He, Xavier), so a
        seeded graph builds identical weights every time.
        """
        self.check_num_inputs(input_shapes)
        self.built = True

    def output_shape(self, input_shapes):
        """Per-sample output shape for these per-sample input shapes (no side effects)."""
        raise NotImplementedError

    def param_shapes(self, input_shapes):
        """{name: shape} of the float32 parameters build() would create, creating nothing.

        Lets a saved config be checked against the weights in its file before
        anything is allocated (cconv.load). None: the layer cannot tell
        without building (the default; a layer with parameters should say).
        """

    def check_num_inputs(self, inputs):
        n = len(inputs)
        if self.num_inputs == -1:
            if n < 2:
                raise ValueError(f"{self.type_name} takes two or more inputs, got {n}")
        elif n != self.num_inputs:
            raise ValueError(f"{self.type_name} takes {self.num_inputs} input(s), got {n}")

    def add_param(self, name, value, trainable=True):
        self.params[name] = value
        self.grads[name] = np.zeros_like(value)
        self.trainable[name] = trainable

    # ---- computation ----
    def forward(self, *inputs, training=False):
        """Output for a batch; in training mode, keep what backward needs."""
        raise NotImplementedError

    def backward(self, grad_out):
        """Gradient w.r.t. the input(s) of the last training forward.

        Writes parameter gradients into self.grads. Returns one array for a
        single-input layer, a tuple (one per input) for multi-input layers.
        """
        raise NotImplementedError

    def __call__(self, *inputs, training=False):
        return self.forward(*inputs, training=training)

    # ---- configuration ----
    def get_config(self):
        """JSON-serialisable constructor arguments; from_config(get_config()) is an equal layer."""
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def astype(self, dtype):
        """Cast parameters (and their gradients) to dtype, e.g. float64 for analysis."""
        for name in list(self.params):
            self.params[name] = self.params[name].astype(dtype)
            self.grads[name] = np.zeros_like(self.params[name])
        return self

    def named_parameters(self):
        return list(self.params.items())

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{self.type_name}({args})"
