"""Shared fixtures and helpers of the kernel tests."""
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest

import cconv

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

# float32: relative to the largest magnitude of the result; float64: near exact
TOL = {np.dtype(np.float32): 2e-4, np.dtype(np.float64): 1e-10}


@pytest.fixture
def rng(request):
    """A generator seeded from the test's id, so every test is reproducible."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(params=[1, 2], ids=["t1", "t2"])
def nthreads(request):
    """Runs the test with cconv at 1 and at 2 threads."""
    with cconv.threads(request.param):
        yield request.param


@pytest.fixture(autouse=True)
def _restore_threads():
    """No test may leak a thread-count change into the next one."""
    before = cconv.get_num_threads()
    yield
    cconv.set_num_threads(before)


def assert_close(got, ref, dtype, tol=None, scale=None):
    """got has dtype `dtype`, the shape of ref, and equals ref within the dtype's tolerance.

    The tolerance is relative to the largest magnitude of ref (or `scale`), since
    a float32 sum of many terms has an absolute error of that order.
    """
    dtype = np.dtype(dtype)
    got = np.asarray(got)
    assert got.dtype == dtype, f"dtype {got.dtype}, expected {dtype}"
    assert got.shape == np.shape(ref), f"shape {got.shape}, expected {np.shape(ref)}"
    tol = TOL[dtype] if tol is None else tol
    if scale is None:
        finite = np.abs(ref[np.isfinite(ref)]) if np.size(ref) else np.zeros(0)
        scale = max(1.0, float(finite.max())) if finite.size else 1.0
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * scale)


def run_python(code, timeout=60, env=None):
    """Run `code` in a fresh interpreter; returns the CompletedProcess."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def build_wheel(package_dir, out_dir, timeout=300):
    """The wheel of a package directory, built by pip in an isolated build environment
    (nothing is installed here); skips when the build backend cannot be fetched."""
    import glob

    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                           "--wheel-dir", str(out_dir), str(package_dir)],
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        offline = ("No matching distribution" in done.stderr
                   or "Could not find a version" in done.stderr)
        if offline:
            pytest.skip(f"no package index to fetch the build backend from: "
                        f"{done.stderr.strip()[-300:]}")
        raise AssertionError(f"wheel build failed:\n{done.stdout}\n{done.stderr}")
    (wheel,) = glob.glob(os.path.join(str(out_dir), "*.whl"))
    return wheel


def numeric_grad(f, x, eps=1e-6, coords=None):
    """Central differences of the scalar f() with respect to the array x (in place).

    coords: iterable of index tuples to probe; all of x when None. Returns an
    array like x holding the estimates (NaN where not probed).
    """
    out = np.full(x.shape, np.nan)
    if coords is None:
        coords = list(np.ndindex(x.shape))
    for idx in coords:
        old = x[idx]
        x[idx] = old + eps
        fp = f()
        x[idx] = old - eps
        fm = f()
        x[idx] = old
        out[idx] = (fp - fm) / (2 * eps)
    return out


def check_numeric_grad(f, x, analytic, rng=None, n_coords=None, eps=1e-6, tol=1e-6):
    """Compare an analytic gradient with central differences (all or n random coords)."""
    if n_coords is None or n_coords >= x.size:
        coords = list(np.ndindex(x.shape))
    else:
        flat = rng.choice(x.size, size=n_coords, replace=False)
        coords = [np.unravel_index(i, x.shape) for i in flat]
    num = numeric_grad(f, x, eps, coords)
    for idx in coords:
        assert abs(num[idx] - analytic[idx]) <= tol * max(1.0, abs(num[idx])), (
            f"at {idx}: numeric {num[idx]!r} vs analytic {analytic[idx]!r}")


# ---------------------------------------------------------------- ONNX plugin tests
ONNX_PLUGIN_DIR = os.path.join(os.path.dirname(TESTS_DIR), "plugins", "cconv-onnx")


@pytest.fixture(scope="module")
def cconv_onnx(tmp_path_factory):
    """The cconv-onnx package, discoverable by entry point; not installed."""
    from plugin_helpers import plugin_on_path

    from cconv import plugins

    with plugin_on_path(ONNX_PLUGIN_DIR, tmp_path_factory.mktemp("site")) as module:
        plugins.reset()
        yield module
    plugins.reset()


def run_onnxruntime(model, feeds):
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def run_onnx_reference(model, feeds):
    reference = pytest.importorskip("onnx.reference")
    return reference.ReferenceEvaluator(model).run(None, feeds)


@pytest.fixture(params=["onnxruntime", "onnx_reference"])
def oracle(request):
    """A function (model, feeds) -> outputs: onnxruntime, then onnx's reference evaluator."""
    return run_onnxruntime if request.param == "onnxruntime" else run_onnx_reference
