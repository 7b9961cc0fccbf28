"""The ONNX backend test cases shipped inside the onnx package (pytorch-converted and
pytorch-operator): each a model.onnx with test_data_set_*/input_*.pb and output_*.pb.

OUT_OF_SCOPE names the cases cconv does not import, each with its reason
(docs/onnx.md lists them); every other case must import and match.
"""
import glob
import os

import numpy as np

SUITES = ("pytorch-converted", "pytorch-operator")

_3D = "3-D convolution or pooling (cconv has 1-D and 2-D layers)"
_BATCH = "the op reads or mixes the batch axis (cconv runs each sample alone)"

#: case name -> why cconv does not import it
OUT_OF_SCOPE = {
    **{name: _3D for name in (
        "test_Conv3d", "test_Conv3d_dilated", "test_Conv3d_dilated_strided",
        "test_Conv3d_groups", "test_Conv3d_no_bias", "test_Conv3d_stride",
        "test_Conv3d_stride_padding", "test_MaxPool3d", "test_MaxPool3d_stride",
        "test_MaxPool3d_stride_padding", "test_AvgPool3d", "test_AvgPool3d_stride",
        "test_AvgPool3d_stride1_pad0_gpu_input", "test_BatchNorm3d_eval",
        "test_BatchNorm3d_momentum_eval", "test_ConvTranspose2d",
        "test_ConvTranspose2d_no_bias", "test_operator_conv", "test_operator_convtranspose",
        "test_operator_maxpool", "test_PoolingSequence", "test_operator_reduced_mean",
        "test_Embedding", "test_Embedding_sparse")},
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
        got = net(*[np.asarray(x, np.float32) for x in ins])
        got = got if isinstance(got, tuple) else (got,)
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert np.shape(g) == np.shape(e), (np.shape(g), np.shape(e))
            scale = max(1.0, float(np.abs(e).max()) if np.size(e) else 1.0)
            np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-4 * scale)
