"""The ONNX backend test cases shipped inside the onnx package (pytorch-converted and
pytorch-operator): each a model.onnx with test_data_set_*/input_*.pb and output_*.pb.

OUT_OF_SCOPE names the cases cconv does not import, each with its reason
(docs/onnx.md lists them); every other case must import and match.
"""
import glob
import os

import numpy as np

SUITES = ("pytorch-converted", "pytorch-operator")

_3D = "3-D convolution, pooling or batch norm (cconv has 1-D and 2-D layers)"
_NO_BATCH = ("an input without a batch axis: a 1-D tensor, or a second input (a matrix, a "
             "bias) whose axis 0 is not the batch; cconv runs each sample alone")
_READS_BATCH = "the model indexes or squeezes the batch axis itself (x[0] of a batch)"
_CONST_OVER_BATCH = ("a constant as large as the input, batch axis included: it would fix "
                     "the batch size")
_EMBEDDING = "an embedding lookup: integer indices as the input (cconv inputs are floats)"

#: case name -> why cconv does not import it (docs/onnx.md lists them too)
OUT_OF_SCOPE = {
    **{name: _3D for name in (
        "test_AvgPool3d", "test_AvgPool3d_stride", "test_AvgPool3d_stride1_pad0_gpu_input",
        "test_BatchNorm3d_eval", "test_BatchNorm3d_momentum_eval", "test_Conv3d",
        "test_Conv3d_dilated", "test_Conv3d_dilated_strided", "test_Conv3d_groups",
        "test_Conv3d_no_bias", "test_Conv3d_stride", "test_Conv3d_stride_padding",
        "test_MaxPool3d", "test_MaxPool3d_stride", "test_MaxPool3d_stride_padding")},
    **{name: _NO_BATCH for name in (
        "test_operator_add_broadcast", "test_operator_add_size1_right_broadcast",
        "test_operator_addmm", "test_operator_basic", "test_operator_chunk",
        "test_operator_mm", "test_operator_symbolic_override_nested", "test_operator_view")},
    "test_operator_index": _READS_BATCH,
    **{name: _CONST_OVER_BATCH for name in (
        "test_PoissonNLLLLoss_no_reduce", "test_operator_non_float_params",
        "test_operator_params")},
    "test_Embedding": _EMBEDDING,
    "test_Embedding_sparse": _EMBEDDING,
}


def data_dir():
    """The onnx package's backend test data folder, or None without onnx."""
    try:
        import onnx.backend.test
    except ImportError:
        return None
    return os.path.join(os.path.dirname(onnx.backend.test.__file__), "data")


def cases():
    """(suite, name, folder) of every shipped case of SUITES, sorted."""
    root = data_dir()
    if root is None:
        return []
    out = []
    for suite in SUITES:
        for folder in sorted(glob.glob(os.path.join(root, suite, "test_*"))):
            out.append((suite, os.path.basename(folder), folder))
    return out


def data_sets(folder):
    """[(inputs, outputs)] of a case: lists of numpy arrays in the files' order."""
    import onnx
    from onnx import numpy_helper

    def read(path):
        t = onnx.TensorProto()
        with open(path, "rb") as f:
            t.ParseFromString(f.read())
        return numpy_helper.to_array(t)

    sets = []
    for ds in sorted(glob.glob(os.path.join(folder, "test_data_set_*"))):
        ins = [read(p) for p in sorted(glob.glob(os.path.join(ds, "input_*.pb")),
                                       key=lambda p: int(p.rsplit("_", 1)[1][:-3]))]
        outs = [read(p) for p in sorted(glob.glob(os.path.join(ds, "output_*.pb")),
                                        key=lambda p: int(p.rsplit("_", 1)[1][:-3]))]
        sets.append((ins, outs))
    return sets


def run_case(import_onnx, folder):
    """Import the case and compare with every data set; raises on a refusal or a mismatch."""
    net = import_onnx(os.path.join(folder, "model.onnx"))
    for ins, expected in data_sets(folder):
        got = net(*ins)
        got = got if isinstance(got, tuple) else (got,)
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert np.shape(g) == np.shape(e), (np.shape(g), np.shape(e))
            scale = max(1.0, float(np.abs(e).max()) if np.size(e) else 1.0)
            np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-4 * scale)
