"""Export a zoo net to ONNX the way users do, cached under bench/zoo/.cache (untracked).

torch.onnx.export with the TorchScript exporter (dynamo=False: onnxscript is not
a dependency here), opset 17 (13 for the import check), eval mode, free batch and
spatial axes (H/W, or a 1-D input's length; the batch alone where the exporter
refuses free spatial sizes, as for VGG's AdaptiveAvgPool2d(7)). The cache key hashes the model
sources, the net, its input shape and the opset, so editing a model re-exports it
and a checkout without torch can still run the files already exported.
"""
import hashlib
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
SOURCES = ("shapes.py", "models.py", "models_classic.py", "models_mobile.py", "models_dense.py")


def cache_path(name, shape, opset):
    h = hashlib.sha256()
    for src in SOURCES:
        h.update((HERE / src).read_bytes())
    h.update(repr((name, tuple(shape), opset, "dynamic batch+spatial", _keeps_bn(name))).encode())
    dims = "x".join(map(str, shape))
    return CACHE / f"{name}-{dims}-op{opset}-{h.hexdigest()[:10]}.onnx"


def export(name, shape, opset, model=None):
    """Path of the ONNX file of zoo net `name` at per-sample `shape` (exported if not cached)."""
    path = cache_path(name, shape, opset)
    if path.exists():
        return path
    import torch

    from models import build

    model = model if model is not None else build(name, shape)
    CACHE.mkdir(exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")   # atomic: another run may export too
    x = torch.zeros((1, *shape))
    with torch.no_grad():
        out_rank = model(x).ndim
    spatial = {i: f"s{i}" for i in range(2, len(shape) + 1)}
    free = {"input": {0: "batch", **spatial},
            "output": {0: "batch", **({i: f"o{i}" for i in range(2, out_rank)})}}
    try:
        _export(torch, model, x, tmp, opset, free, name)
    except Exception:  # noqa: BLE001 - e.g. AdaptiveAvgPool2d(7) needs static H/W
        _export(torch, model, x, tmp, opset, {"input": {0: "batch"}, "output": {0: "batch"}}, name)
    os.replace(tmp, path)
    return path


def _keeps_bn(name):
    """The training nets (CIFAR forms) keep their BatchNormalization nodes.

    In the default (EVAL) mode the exporter folds each BatchNorm into the conv
    before it: fine for inference, but the net cconv trains would then lack
    the BatchNorms torch trains. TrainingMode.PRESERVE of an eval-mode model
    exports the same inference graph without that folding.
    """
    return name.endswith("_cifar")


def _export(torch, model, x, path, opset, axes, name=""):
    mode = torch.onnx.TrainingMode.PRESERVE if _keeps_bn(name) else torch.onnx.TrainingMode.EVAL
    with torch.no_grad():
        torch.onnx.export(model, (x,), str(path), opset_version=opset, input_names=["input"],
                          output_names=["output"], dynamic_axes=axes, dynamo=False,
                          training=mode)


def free_axes(path):
    """'batch+spatial' or 'batch' : which input axes the ONNX file leaves free."""
    import onnx

    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return "batch+spatial" if all(d.dim_param for d in dims[2:]) else "batch"
