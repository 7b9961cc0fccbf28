"""The table of layer configurations the layer tests (and the torch comparison) run on."""
import numpy as np

from cconv import nn


class Case:
    """A layer factory, per-sample input shapes, and how to draw inputs.

    inputs: "normal" (standard normal), "positive" (uniform in [0.5, 2]), "kinks" (uniform in [-5, 5] but at least
    0.05 away from 0 and +-3, where the activations bend), "distinct" (a
    permutation of well-separated values, so max pooling's argmax is stable).
    """

    def __init__(self, id, make, shapes, inputs="normal", batch=2):
        self.id = id
        self.make = make
        self.shapes = [tuple(s) for s in shapes]
        self.inputs = inputs
        self.batch = batch

    def draw(self, rng, dtype=np.float64):
        xs = []
        for shape in self.shapes:
            full = (self.batch,) + shape
            size = int(np.prod(full))
            if self.inputs == "distinct":
                x = rng.permutation(size).reshape(full) * 0.1 - size * 0.05
            elif self.inputs == "positive":
                x = rng.uniform(0.5, 2.0, full)
            elif self.inputs == "kinks":
                x = rng.uniform(-5, 5, full)
                for kink in (-3.0, 0.0, 3.0):
                    near = np.abs(x - kink) < 0.05
                    x[near] = kink + np.where(x[near] >= kink, 0.05, -0.05)
            else:
                x = rng.standard_normal(full)
            xs.append(x.astype(dtype))
        return xs

    def __repr__(self):
        return self.id


CASES = [
    Case("conv2d", lambda: nn.Conv2d(3, 4, 3), [(3, 6, 6)]),
    Case("conv2d_s2p1", lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1), [(3, 7, 7)]),
    Case("conv2d_rect", lambda: nn.Conv2d(2, 3, (2, 3), stride=(1, 2), padding=(1, 0)),
         [(2, 5, 6)]),
    Case("conv2d_asym_pad", lambda: nn.Conv2d(2, 2, 3, padding=((1, 0), (0, 2))), [(2, 5, 5)]),
    Case("conv2d_dil_groups_nobias",
         lambda: nn.Conv2d(4, 6, 3, dilation=2, groups=2, bias=False), [(4, 7, 7)]),
    Case("conv2d_depthwise", lambda: nn.Conv2d(3, 3, 3, padding=1, groups=3), [(3, 5, 5)]),
    Case("conv2d_same", lambda: nn.Conv2d(2, 3, 4, padding="same"), [(2, 5, 5)]),
    Case("conv2d_same_s2", lambda: nn.Conv2d(2, 3, 3, stride=2, padding="same"), [(2, 6, 5)]),
    Case("conv1d", lambda: nn.Conv1d(3, 4, 3), [(3, 8)]),
    Case("conv1d_s2_lr_pad", lambda: nn.Conv1d(2, 4, 3, stride=2, padding=(2, 1)), [(2, 9)]),
    Case("conv1d_same_dil_groups",
         lambda: nn.Conv1d(4, 2, 3, padding="same", dilation=2, groups=2), [(4, 8)]),
    Case("maxpool2d", lambda: nn.MaxPool2d(2), [(2, 6, 6)], "distinct"),
    Case("maxpool2d_s2p1", lambda: nn.MaxPool2d(3, stride=2, padding=1), [(2, 7, 6)],
         "distinct"),
    Case("maxpool2d_dil_ceil", lambda: nn.MaxPool2d(2, stride=2, dilation=2, ceil_mode=True),
         [(1, 7, 8)], "distinct"),
    Case("maxpool1d", lambda: nn.MaxPool1d(3, stride=2, padding=1, ceil_mode=True), [(3, 8)],
         "distinct"),
    Case("avgpool2d", lambda: nn.AvgPool2d(2), [(2, 6, 6)]),
    Case("avgpool2d_s2p1_nopad", lambda: nn.AvgPool2d(3, stride=2, padding=1,
                                                      count_include_pad=False), [(2, 7, 6)]),
    Case("avgpool2d_ceil", lambda: nn.AvgPool2d((2, 3), ceil_mode=True), [(2, 5, 7)]),
    Case("avgpool1d", lambda: nn.AvgPool1d(3, stride=2, padding=1), [(3, 8)]),
    Case("gap2d", lambda: nn.GlobalAvgPool(), [(3, 4, 5)]),
    Case("gap1d", lambda: nn.GlobalAvgPool(), [(3, 7)]),
    Case("relu", lambda: nn.ReLU(), [(3, 4, 4)], "kinks"),
    Case("leaky_relu", lambda: nn.LeakyReLU(0.2), [(3, 5)], "kinks"),
    Case("prelu_shared", lambda: nn.PReLU(), [(3, 4, 4)], "kinks"),
    Case("prelu_channels", lambda: nn.PReLU(3), [(3, 4, 4)], "kinks"),
    Case("prelu_channels_2d", lambda: nn.PReLU(5), [(5,)], "kinks", batch=4),
    Case("sigmoid", lambda: nn.Sigmoid(), [(3, 5)]),
    Case("tanh", lambda: nn.Tanh(), [(3, 5)]),
    Case("hardsigmoid", lambda: nn.HardSigmoid(), [(3, 6)], "kinks"),
    Case("hardswish", lambda: nn.HardSwish(), [(3, 6)], "kinks"),
    Case("softmax", lambda: nn.Softmax(), [(5,)], batch=3),
    Case("softmax_last", lambda: nn.Softmax(axis=-1), [(3, 4)]),
    Case("softmax_channels_4d", lambda: nn.Softmax(axis=1), [(3, 2, 2)]),
    Case("linear", lambda: nn.Linear(8, 5), [(8,)], batch=3),
    Case("linear_nobias_3d", lambda: nn.Linear(6, 4, bias=False, init="xavier"), [(3, 6)]),
    Case("flatten", lambda: nn.Flatten(), [(2, 3, 4)]),
    Case("reshape", lambda: nn.Reshape((4, -1)), [(2, 3, 4)]),
    Case("transpose", lambda: nn.Transpose((1, 2, 0)), [(2, 3, 4)]),
    Case("batchnorm1d", lambda: nn.BatchNorm1d(4), [(4,)], batch=5),
    Case("batchnorm1d_ncl", lambda: nn.BatchNorm1d(3, momentum=0.3), [(3, 5)]),
    Case("batchnorm2d", lambda: nn.BatchNorm2d(3), [(3, 3, 4)]),
    Case("batchnorm2d_noaffine", lambda: nn.BatchNorm2d(2, eps=1e-3, affine=False),
         [(2, 3, 3)]),
    Case("dropout", lambda: nn.Dropout(0.4, seed=3), [(3, 4, 4)]),
    Case("add2", lambda: nn.Add(), [(3, 4), (3, 4)]),
    Case("add3", lambda: nn.Add(), [(2, 3, 3)] * 3),
    Case("concat", lambda: nn.Concat(), [(2, 3), (4, 3)]),
    Case("concat_last3", lambda: nn.Concat(axis=-1), [(2, 1), (2, 3), (2, 2)]),
    # layers the ONNX importer maps onto (plugins/cconv-onnx)
    Case("convtranspose2d_s2_outpad",
         lambda: nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1), [(3, 4, 5)]),
    Case("convtranspose2d_groups_dil_asym",
         lambda: nn.ConvTranspose2d(4, 2, (2, 3), stride=(1, 2), padding=((1, 0), (0, 2)),
                                    dilation=2, groups=2, bias=False), [(4, 4, 4)]),
    Case("clip", lambda: nn.Clip(-3.0, 3.0), [(3, 5)], "kinks"),
    Case("clip_min_only", lambda: nn.Clip(min=0.0), [(3, 5)], "kinks"),
    Case("broadcast_add", lambda: nn.BroadcastAdd(), [(3, 1, 4), (2, 1)]),
    Case("sub_same", lambda: nn.Sub(), [(2, 3), (2, 3)]),
    Case("mul_se", lambda: nn.Mul(), [(3, 4, 4), (3, 1, 1)]),
    Case("div_broadcast", lambda: nn.Div(), [(3, 4), (4,)], "kinks"),
    Case("const_mul_trainable", lambda: nn.ConstantOp("mul", shape=(3, 1, 1), trainable=True),
         [(3, 2, 2)]),
    Case("const_add_scalar", lambda: nn.ConstantOp("add", value=3.0), [(3, 4)]),
    Case("const_rsub", lambda: nn.ConstantOp("sub", value=[1.0, -2.0], reverse=True),
         [(3, 2)]),
    Case("const_div", lambda: nn.ConstantOp("div", value=6.0), [(3, 4)]),
    Case("const_rdiv", lambda: nn.ConstantOp("div", value=[[2.0], [-1.0]], reverse=True),
         [(2, 3)], "kinks"),
    Case("matmul", lambda: nn.MatMul(), [(2, 3, 4), (4, 5)]),
    Case("resize_nearest_2x", lambda: nn.Resize(scale=(2.0, 2.0)), [(2, 3, 4)]),
    Case("resize_nearest_asym_floor",
         lambda: nn.Resize(size=(5, 7), coordinate_transformation_mode="asymmetric",
                           nearest_mode="floor"), [(2, 3, 4)]),
    Case("resize_linear_half_pixel", lambda: nn.Resize(size=(7, 5), mode="linear"), [(2, 3, 4)]),
    Case("resize_linear_align_1d",
         lambda: nn.Resize(size=(9,), mode="linear",
                           coordinate_transformation_mode="align_corners"), [(2, 4)]),
    Case("resize_as_linear_pytorch_half_pixel",
         lambda: nn.ResizeAs(mode="linear", coordinate_transformation_mode="pytorch_half_pixel"),
         [(2, 3, 4), (1, 7, 5)]),
    Case("resize_as_nearest_1d_down",
         lambda: nn.ResizeAs(coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
         [(2, 9), (3, 4)]),
    Case("pad_same_upper_s2", lambda: nn.PadSame((3, 3), 2, value=0.5), [(2, 5, 6)]),
    Case("pad_same_lower_edge_1d",
         lambda: nn.PadSame(4, 3, dilation=2, lower=True, mode="edge"), [(2, 7)]),
    Case("reshape_as_tokens_to_map", lambda: nn.ReshapeAs([0, 1, 1], [None, 1, 2]),
         [(4, 6), (3, 2, 3)]),
    Case("reshape_as_rest", lambda: nn.ReshapeAs([-1, 1], [None, 0]), [(4, 6), (3, 2)]),
    Case("pad_constant_crop", lambda: nn.Pad(((0, 0), (1, 2), (2, -1)), value=1.5),
         [(2, 4, 5)]),
    Case("pad_reflect", lambda: nn.Pad(((0, 0), (2, 1), (1, 3)), "reflect"), [(2, 4, 5)]),
    Case("pad_edge", lambda: nn.Pad(((1, 0), (0, 2)), "edge"), [(2, 3)]),
    Case("slice_as_crop", lambda: nn.SliceAs([0, 1], [2, 3], [2, 3]), [(2, 6, 7), (1, 4, 5)]),
    Case("slice_as_clamp_1d", lambda: nn.SliceAs([1], [2], [1]), [(2, 5), (7, 3)]),
    Case("pad_as_constant", lambda: nn.PadAs(value=0.5), [(2, 3, 4), (1, 6, 5)]),
    Case("pad_as_crop_edge", lambda: nn.PadAs("edge"), [(2, 5, 4), (3, 2, 7)]),
    # vision-model operators (nn/unary.py, broadcast.py, reduce.py, groupnorm.py, indexing.py)
    *[Case(f"unary_{fn}", (lambda fn=fn: nn.Unary(fn)), [(3, 4)], "kinks")
      for fn in ("neg", "abs", "exp", "erf", "softplus", "softsign", "mish", "gelu",
                 "gelu_tanh", "selu")],
    Case("unary_elu_alpha", lambda: nn.Unary("elu", alpha=0.7), [(3, 4)], "kinks"),
    Case("unary_pow_3", lambda: nn.Unary("pow", alpha=3.0), [(3, 4)]),
    *[Case(f"unary_{fn}_positive", (lambda fn=fn: nn.Unary(fn)), [(3, 4)], "positive")
      for fn in ("log", "sqrt", "reciprocal")],
    Case("unary_pow_half_positive", lambda: nn.Unary("pow", alpha=0.5), [(3, 4)], "positive"),
    Case("log_softmax", lambda: nn.LogSoftmax(axis=-1), [(3, 4)]),
    Case("softmax_flatten_opset11", lambda: nn.Softmax(axis=1, flatten=True), [(3, 2, 2)]),
    Case("log_softmax_flatten_axis2", lambda: nn.LogSoftmax(axis=2, flatten=True), [(2, 3, 2)]),
    Case("nary_sum3_broadcast", lambda: nn.Nary("sum"), [(3, 4), (4,), (3, 1)]),
    Case("nary_mean", lambda: nn.Nary("mean"), [(2, 3), (2, 3)]),
    Case("nary_max3", lambda: nn.Nary("max"), [(3, 4), (1, 4), (3, 4)]),
    Case("nary_min", lambda: nn.Nary("min"), [(2, 3), (3,)]),
    Case("pow_two_inputs", lambda: nn.Pow(), [(3, 4), (4,)], "positive"),
    Case("compare_less", lambda: nn.Compare("less"), [(3, 4), (3, 4)]),
    Case("where", lambda: nn.Where(), [(3, 4), (3, 4), (4,)]),
    Case("where_constant_mask",
         lambda: nn.Where({"condition": [[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]}), [(2, 3), (3,)]),
    *[Case(f"reduce_{op}", (lambda op=op: nn.Reduce(op, axes=(-1,), keepdims=False)),
           [(3, 4)], "distinct" if op in ("max", "min") else "normal")
      for op in ("sum", "mean", "max", "min", "prod", "l1", "l2", "sum_square",
                 "log_sum_exp")],
    Case("reduce_mean_hw_keepdims", lambda: nn.Reduce("mean", axes=(2, 3)), [(2, 3, 4)]),
    Case("reduce_max_all", lambda: nn.Reduce("max"), [(2, 3, 2)], "distinct"),
    Case("layernorm_last", lambda: nn.LayerNorm(4), [(3, 4)]),
    Case("layernorm_two_axes", lambda: nn.LayerNorm((3, 4), eps=1e-3), [(2, 3, 4)]),
    Case("groupnorm", lambda: nn.GroupNorm(2, 4), [(4, 3, 2)]),
    Case("instancenorm", lambda: nn.InstanceNorm(3), [(3, 2, 3)]),
    Case("instancenorm_1d", lambda: nn.InstanceNorm(2, affine=False), [(2, 5)]),
    Case("lrn", lambda: nn.LRN(3, alpha=0.1, beta=0.75, bias=2.0), [(5, 2, 2)]),
    Case("lrn_even_size", lambda: nn.LRN(4, alpha=0.2, beta=0.5), [(5, 3)]),
    Case("slice_steps", lambda: nn.Slice([1, -1], [3, -10**9], [1, -1], [1, -2]), [(4, 5)]),
    Case("gather_2d_indices", lambda: nn.Gather(-1, [[0, 2], [2, -1]]), [(2, 4)]),
    Case("gather_scalar", lambda: nn.Gather(1, 1), [(3, 4)]),
    Case("expand", lambda: nn.Expand([2, 3, 4]), [(3, 1)]),
    Case("tile", lambda: nn.Tile([2, 1, 3]), [(2, 3, 2)]),
    Case("depth_to_space_dcr", lambda: nn.DepthToSpace(2), [(8, 2, 3)]),
    Case("depth_to_space_crd", lambda: nn.DepthToSpace(2, mode="CRD"), [(8, 2, 3)]),
    Case("space_to_depth", lambda: nn.SpaceToDepth(2), [(2, 4, 6)]),
    Case("move_batch_axis", lambda: nn.MoveBatchAxis(2), [(3, 4)]),
]


def built(case, seed=0):
    layer = case.make()
    layer.build(case.shapes, rng=np.random.default_rng(seed))
    return layer
