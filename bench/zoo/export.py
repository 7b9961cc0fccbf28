"""Export a zoo net to ONNX the way users do, cached under bench/zoo/.cache (untracked).

torch.onnx.export with the TorchScript exporter (dynamo=False: onnxscript is not
a dependency here), a free batch axis, eval mode. The cache key hashes the model
sources, the net, its input shape and the opset, so editing a model re-exports it
and a checkout without torch can still run the files already exported.
"""
import hashlib
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
SOURCES = ("models.py", "models_classic.py", "models_mobile.py", "models_dense.py")


def cache_path(name, shape, opset):
    h = hashlib.sha256()
    for src in SOURCES:
        h.update((HERE / src).read_bytes())
    h.update(repr((name, tuple(shape), opset)).encode())
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
    with torch.no_grad():
        torch.onnx.export(model, (torch.zeros((1, *shape)),), str(tmp), opset_version=opset,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                          dynamo=False)
    os.replace(tmp, path)
    return path
