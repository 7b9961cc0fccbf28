"""Small mobile-style CNNs written with onnx.helper, for the ONNX importer tests."""
import numpy as np
from onnx import TensorProto, helper, numpy_helper


class Builder:
    """Accumulates nodes and float32 initializers; fresh names t0, t1, ..."""

    def __init__(self, rng, opset=17):
        self.rng, self.opset = rng, opset
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, prefix="t"):
        self.n += 1
        return f"{prefix}{self.n}"

    def const(self, array, dtype=np.float32):
        name = self.name("w")
        self.inits.append(numpy_helper.from_array(np.asarray(array, dtype=dtype), name))
        return name

    def weight(self, *shape, scale=0.5):
        return self.const(self.rng.standard_normal(shape) * scale)

    def op(self, op_type, inputs, n_out=1, **attrs):
        outs = [self.name() for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs,
                                           name=self.name(op_type.lower() + "_"), **attrs))
        return outs[0] if n_out == 1 else outs

    # ---- blocks
    def conv(self, x, cin, cout, k, stride=1, group=1, bias=True, **attrs):
        ins = [x, self.weight(cout, cin // group, k, k, scale=1.0 / np.sqrt(cin // group * k * k))]
        if bias:
            ins.append(self.weight(cout, scale=0.1))
        attrs.setdefault("pads", [k // 2] * 4)
        if "auto_pad" in attrs:
            attrs.pop("pads")
        return self.op("Conv", ins, kernel_shape=[k, k], strides=[stride, stride],
                       group=group, **attrs)

    def bn(self, x, c):
        rng = self.rng
        return self.op("BatchNormalization",
                       [x, self.const(rng.uniform(0.5, 1.5, c)), self.const(rng.normal(0, 0.1, c)),
                        self.const(rng.normal(0, 0.1, c)), self.const(rng.uniform(0.5, 1.5, c))],
                       epsilon=1e-3)

    def model(self, x_name, shape, out, out_shape, dynamic_batch=True):
        x = helper.make_tensor_value_info(x_name, TensorProto.FLOAT,
                                          ["N" if dynamic_batch else 2] + list(shape))
        y = helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)
        graph = helper.make_graph(self.nodes, "g", [x], [y], initializer=self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        m.ir_version = 8
        return m


def mobile_cnn(rng, se_with_gemm=False):
    """MobileNetV3-like: conv-BN-hardswish stem, depthwise stride 2, squeeze-excite
    (global pool -> conv or gemm -> relu -> hardsigmoid -> broadcast Mul), residual
    Add, SAME-padded depthwise, global pooling and a Gemm head."""
    b = Builder(rng)
    h = b.op("HardSwish", [b.bn(b.conv("x", 3, 8, 3, stride=2, bias=False), 8)])
    h = b.op("Relu", [b.bn(b.conv(h, 8, 8, 3, stride=2, group=8, bias=False), 8)])
    # inverted residual with squeeze-excite
    e = b.op("HardSwish", [b.bn(b.conv(h, 8, 16, 1, bias=False), 16)])
    d = b.op("HardSwish", [b.bn(b.conv(e, 16, 16, 3, group=16, bias=False), 16)])
    s = b.op("GlobalAveragePool", [d])
    if se_with_gemm:
        s = b.op("Flatten", [s], axis=1)
        s = b.op("Relu", [b.op("Gemm", [s, b.weight(4, 16), b.weight(4, scale=0.1)], transB=1)])
        s = b.op("Gemm", [s, b.weight(4, 16), b.weight(16, scale=0.1)])
        s = b.op("HardSigmoid", [s], alpha=1 / 6, beta=0.5)
        # reshape target computed from the input's shape, as exporters write it
        shp = b.op("Shape", [d])
        n = b.op("Gather", [shp, b.const(0, np.int64)], axis=0)
        c = b.op("Gather", [shp, b.const(1, np.int64)], axis=0)
        tgt = b.op("Concat", [b.op("Unsqueeze", [n, b.const([0], np.int64)]),
                              b.op("Unsqueeze", [c, b.const([0], np.int64)]),
                              b.const([1, 1], np.int64)], axis=0)
        s = b.op("Reshape", [s, tgt])
    else:
        s = b.op("Relu", [b.conv(s, 16, 4, 1)])
        s = b.op("HardSigmoid", [b.conv(s, 4, 16, 1)])      # ONNX default alpha 0.2
    d = b.op("Mul", [d, s])
    p = b.bn(b.conv(d, 16, 8, 1, bias=False), 8)
    h = b.op("Add", [h, p])
    # SAME-padded depthwise stride 2 on an odd size, then expand
    h = b.op("Relu", [b.conv(h, 8, 8, 3, stride=2, group=8, auto_pad="SAME_UPPER")])
    h = b.op("HardSwish", [b.bn(b.conv(h, 8, 24, 1, bias=False), 24)])
    h = b.op("Flatten", [b.op("GlobalAveragePool", [h])])
    h = b.op("HardSwish", [b.op("Gemm", [h, b.weight(24, 12), b.weight(12, scale=0.1)])])
    h = b.op("Gemm", [h, b.weight(5, 12), b.weight(5, scale=0.1)], transB=1, alpha=0.5,
             beta=2.0)
    out = b.op("Softmax", [h], axis=1)
    return b.model("x", (3, 18, 18), out, ["N", 5])


def assorted_ops(rng):
    """Every other supported operator at least once: transposed conv, resizing,
    padding, pooling variants, activations, arithmetic with constants, shapes."""
    b = Builder(rng, opset=13)
    x = b.op("Identity", ["x"])
    h = b.op("LeakyRelu", [b.conv(x, 4, 6, 3)], alpha=0.1)
    h = b.op("PRelu", [h, b.const(rng.uniform(0, 0.5, (6, 1, 1)))])
    up = b.op("ConvTranspose", [h, b.weight(6, 4, 3, 3, scale=0.3), b.weight(4, scale=0.1)],
              strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])          # 10 -> 20
    up = b.op("Clip", [up, b.const(-1.0), b.const(1.5)])
    near = b.op("Resize", [h, "", b.const([1, 1, 2, 2])], mode="nearest",
                coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    nc = b.op("Slice", [b.op("Shape", [h]), b.const([0], np.int64), b.const([2], np.int64)])
    sizes = b.op("Concat", [nc, b.const([20, 20], np.int64)], axis=0)
    lin = b.op("Resize", [h, "", "", sizes], mode="linear")
    cat = b.op("Concat", [up, near, lin], axis=1)                                 # 16 ch
    cat = b.op("Pad", [cat, b.const([0, 0, 1, 2, 0, 0, 2, 1], np.int64)], mode="reflect")
    m = b.op("MaxPool", [cat], kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1],
             ceil_mode=1)
    a = b.op("AveragePool", [cat], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
             ceil_mode=1, count_include_pad=0)
    a = b.op("Sigmoid", [a])
    h = b.op("Sub", [m, b.op("Tanh", [a])])
    h = b.op("Div", [h, b.op("Add", [b.op("Sigmoid", [a]), b.const(1.0)])])
    h = b.op("Mul", [b.const(rng.uniform(0.5, 1, (16, 1, 1))), h])
    h = b.op("Dropout", [h])
    h = b.op("AveragePool", [h], kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_UPPER")
    t = b.op("Transpose", [h], perm=[0, 2, 3, 1])                                 # N,H,W,C
    t = b.op("MatMul", [t, b.weight(16, 5, scale=0.3)])
    t = b.op("Unsqueeze", [t, b.const([1], np.int64)])
    t = b.op("Squeeze", [t, b.const([1], np.int64)])
    t = b.op("Reshape", [t, b.const([0, -1], np.int64)])
    out = b.op("Sub", [b.const(0.5), t])
    return b.model("x", (4, 10, 10), out, ["N", None])
