"""Torch-exported networks import without input shapes and match onnxruntime (issue 21).

Each network of tests/torch_nets.py (text recognizer, ConvNeXt, EfficientNet,
ResNet, MobileNetV3, SqueezeNet, ShuffleNetV2, DenseNet, Inception, UNet, FPN,
1-D audio) is exported with torch.onnx.export (opsets 13 and 17, TorchScript exporter,
dynamic batch and spatial axes), imported with cconv_onnx.import_onnx with no
input_shapes, and compared with onnxruntime at two sizes, batch 1 and 3, to
1e-4 of the output scale. The imported net is then exported with
cconv.export_onnx, and onnxruntime on that file equals cconv to 1e-5.
Skips when torch or onnxruntime is missing.
"""
import io
import os
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

import torch_nets  # noqa: E402  (imports torch)

import cconv  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: nets that do not import or match yet: name -> the reason (strict xfail)
KNOWN_FAILURES = {}


def _export(module, channels, spatial_rank, opset):
    x = torch.randn((2, channels) + (16,) * spatial_rank)
    axes = {0: "N", **{2 + i: f"S{i}" for i in range(spatial_rank)}}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, (x,), buf, dynamo=False, opset_version=opset,
                              input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": axes})
        except (ImportError, ModuleNotFoundError) as exc:
            pytest.skip(f"torch.onnx.export is unavailable here: {exc}")
    return buf.getvalue()


def _session(model_bytes):
    return ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])


def _close(got, want, tol, what):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    scale = max(float(np.abs(want).max()), 1e-6)
    err = float(np.abs(got - want).max())
    assert err <= tol * scale, f"{what}: max error {err:.3g} > {tol:g} x scale {scale:.3g}"


@pytest.mark.parametrize("opset", [13, 17])
@pytest.mark.parametrize("name", sorted(torch_nets.NETS))
def test_torch_net_imports_and_matches(cconv_onnx, name, opset, tmp_path):
    if name in KNOWN_FAILURES:
        pytest.xfail(KNOWN_FAILURES[name])
    module, channels, sizes = torch_nets.build(name)
    data = _export(module, channels, len(sizes[0]), opset)
    net = cconv_onnx.import_onnx(data)
    assert all(d is None for d in net.input_spec["x"][1:] if d != channels), net.input_spec
    sess = _session(data)
    rng = np.random.default_rng(0)
    cases = []
    for size in sizes:
        for batch in (1, 3):
            x = rng.standard_normal((batch, channels) + size).astype(np.float32)
            want = sess.run(None, {"x": x})[0]
            got = net(x)
            _close(got, want, 1e-4, f"{name} at {x.shape} against onnxruntime")
            cases.append((x, got))

    path = str(tmp_path / f"{name}.onnx")
    cconv.export_onnx(net, path)
    back = _session(path)
    feed = back.get_inputs()[0].name
    for x, got in cases:
        _close(back.run(None, {feed: x})[0], got, 1e-5,
               f"{name} at {x.shape}: cconv's export in onnxruntime against cconv")


class _SequenceFirstHead(torch.nn.Module):
    """A (T, N, C) sequence head as seq2seq decoders write it: the batch axis moved to 1,
    then a Linear (MatMul + bias Add), a (1, 1, C) position constant and a (C,) scale."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, 2, 1)
        self.proj = torch.nn.Linear(8, 8)
        self.pos = torch.nn.Parameter(torch.linspace(-1, 1, 8).reshape(1, 1, 8))
        self.scale = torch.nn.Parameter(torch.linspace(0.5, 2, 8))

    def forward(self, x):
        t = self.stem(x).mean(2).permute(2, 0, 1)           # (T, N, C)
        t = (self.proj(t) + self.pos) * self.scale
        return t.permute(1, 0, 2).log_softmax(-1)            # (N, T, C)


class _PadToMultiple(torch.nn.Module):
    """Pad the width to a multiple of 4 (Mod on the input's shape), fixed-size export."""

    def forward(self, x):
        return torch.nn.functional.pad(x, (0, (4 - x.shape[-1] % 4) % 4)) * 2


def _onnx_of(module, x, opset=17, axes=None):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.from_numpy(x),), buf, dynamo=False,
                          opset_version=opset, input_names=["x"], output_names=["y"],
                          dynamic_axes=None if axes is None else {"x": axes})
    return buf.getvalue()


def test_constants_broadcast_against_a_moved_batch_axis(cconv_onnx):
    """(T, N, C) + bias (C,) and * (1, 1, C): the constants keep their axes after the
    moved batch axis (a (1, 1, C) constant loses its size-1 batch slot)."""
    torch.manual_seed(0)
    module = _SequenceFirstHead()
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 12)).astype(np.float32)
    data = _onnx_of(module, x, axes={0: "N", 2: "H", 3: "W"})
    net = cconv_onnx.import_onnx(data)
    for shape in ((1, 3, 8, 12), (3, 3, 10, 18)):
        x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
        _close(net(x), _session(data).run(None, {"x": x})[0], 1e-4, f"sequence head {shape}")


def test_a_constant_that_would_broadcast_over_a_moved_batch_axis_is_refused(cconv_onnx):
    class Bad(torch.nn.Module):
        def forward(self, x):
            return x.mean(2).permute(2, 0, 1) + torch.arange(6.0).reshape(1, 2, 3)
    x = np.zeros((2, 3, 4, 5), np.float32)
    with pytest.raises(cconv_onnx.OnnxImportError, match="broadcast over the batch axis"):
        cconv_onnx.import_onnx(_onnx_of(Bad(), x, axes={2: "H", 3: "W"}))


def test_mod_on_shapes_folds(cconv_onnx):
    """x.shape[-1] % 4 (ONNX Mod on a shape) folds at import like the other shape arithmetic."""
    x = np.random.default_rng(3).standard_normal((2, 3, 5, 7)).astype(np.float32)
    data = _onnx_of(_PadToMultiple(), x)
    assert "Mod" in {n.op_type for n in onnx.load_from_string(data).graph.node}
    y = cconv_onnx.import_onnx(data)(x)
    assert y.shape == (2, 3, 5, 8)
    _close(y, _session(data).run(None, {"x": x})[0], 1e-6, "pad to a multiple of 4")
