"""Layers and losses. Every built-in layer is listed in LAYER_CLASSES by its type_name."""
from . import init
from .activations import (HardSigmoid, HardSwish, LeakyReLU, LogSoftmax, PReLU, ReLU,
                          Sigmoid, Softmax, Tanh)
from .base import Layer
from .batchaxis import MoveBatchAxis
from .broadcast import Compare, Nary, Pow, Where
from .conv import Conv1d, Conv2d
from .convtranspose import ConvTranspose2d
from .dropout import Dropout
from .elementwise import BroadcastAdd, Clip, ConstantOp, Div, MatMul, Mul, Sub
from .groupnorm import LRN, GroupNorm, InstanceNorm, LayerNorm
from .indexing import DepthToSpace, Expand, Gather, Slice, SliceAs, SpaceToDepth, Tile
from .linear import Linear
from .losses import LOSSES, get_loss, mse, softmax_cross_entropy
from .merge import Add, Concat
from .norm import BatchNorm1d, BatchNorm2d
from .pad import Pad, PadAs, PadSame
from .pool import AvgPool1d, AvgPool2d, GlobalAvgPool, MaxPool1d, MaxPool2d
from .reduce import Reduce
from .resize import Resize, ResizeAs
from .shape import Flatten, Reshape, ReshapeAs, Transpose
from .unary import Unary

# the vision-model operators (ONNX importer): one class per family, table-driven inside
_VISION_OPS = (Unary, LogSoftmax, Nary, Pow, Compare, Where, Reduce, LayerNorm, GroupNorm,
               InstanceNorm, LRN, Slice, Gather, Expand, Tile, DepthToSpace, SpaceToDepth,
               MoveBatchAxis, SliceAs)

#: type_name -> class of every built-in layer (the plugin registry registers these).
LAYER_CLASSES = {cls.type_name: cls for cls in (
    Conv1d, Conv2d,
    MaxPool1d, MaxPool2d, AvgPool1d, AvgPool2d, GlobalAvgPool,
    ReLU, LeakyReLU, PReLU, Sigmoid, Tanh, HardSigmoid, HardSwish, Softmax,
    Linear, Flatten, Reshape, Transpose,
    BatchNorm1d, BatchNorm2d, Dropout, Add, Concat,
    ConvTranspose2d, Clip, BroadcastAdd, Sub, Mul, Div, ConstantOp, MatMul, Resize, Pad,
    ResizeAs, PadSame, ReshapeAs, PadAs,
) + _VISION_OPS}

__all__ = [
    "Layer", "LAYER_CLASSES", "Sequential", "init",
    "softmax_cross_entropy", "mse", "LOSSES", "get_loss",
    "Conv1d", "Conv2d",
    "MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d", "GlobalAvgPool",
    "ReLU", "LeakyReLU", "PReLU", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Softmax",
    "Linear", "Flatten", "Reshape", "Transpose",
    "BatchNorm1d", "BatchNorm2d", "Dropout", "Add", "Concat",
    "ConvTranspose2d", "Clip", "BroadcastAdd", "Sub", "Mul", "Div", "ConstantOp", "MatMul",
    "Resize", "ResizeAs", "Pad", "PadSame", "ReshapeAs", "PadAs",
    "Unary", "LogSoftmax", "Nary", "Pow", "Compare", "Where", "Reduce", "LayerNorm",
    "GroupNorm", "InstanceNorm", "LRN", "Slice", "Gather", "Expand", "Tile", "DepthToSpace",
    "SpaceToDepth", "MoveBatchAxis", "SliceAs",
]


def __getattr__(name):
    # Sequential lives in cconv.graph, which imports cconv.nn: import it late, no cycle.
    if name == "Sequential":
        from ..graph import Sequential
        globals()["Sequential"] = Sequential
        return Sequential
    raise AttributeError(f"module 'cconv.nn' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | {"Sequential"})
