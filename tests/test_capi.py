"""The public C API (include/cconv.h; docs/c-api.md) seen from its users.

- C programs: the example network in examples/c, built with its Makefile
  against the static library, gives what cconv.ops gives; tests/c/test_capi.c
  (bad arguments -> status codes, naive references, concurrent calls) passes,
  also under AddressSanitizer + UBSan (slow).
- ctypes over the shipped libcconv.a: every operation against cconv.ops and
  numpy, both dtypes.
- A Cython extension built in tmp_path cimports cconv.capi, calls kernels
  with the GIL released through the capsule cconv._C_API (and once more
  linked to the static library); an ABI mismatch is a clear ImportError.
"""
import ctypes
import os
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import cconv
from cconv import _embed, ops

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_DIR = ROOT / "examples" / "c"
C_TEST = ROOT / "tests" / "c" / "test_capi.c"
CORE_DIR = ROOT / "src" / "cconv" / "_core"
CC = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")

needs_cc = pytest.mark.skipif(CC is None or sys.platform == "win32",
                              reason="needs a Unix C compiler (cc/gcc)")


def run(cmd, **kw):
    """Run a command; on failure show its output in the assertion."""
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, (
        f"{cmd!r} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc.stdout


def cconv_flags(*which):
    return run([sys.executable, "-m", "cconv", *which]).split()


# ---------------------------------------------------------------- flags, headers

def test_get_include_has_the_headers_and_is_cheap():
    inc = Path(cconv.get_include())
    assert (inc / "cconv.h").is_file() and (inc / "cconv_capsule.h").is_file()
    assert inc == Path(_embed.include_dir())
    code = "import cconv, sys; cconv.get_include(); print('cconv._kernels' in sys.modules)"
    out = run([sys.executable, "-c", code])
    assert out.strip() == "False"


def test_cflags_libs():
    flags = cconv_flags("--cflags", "--libs")
    assert flags[0] == f"-I{cconv.get_include()}"
    assert f"-L{_embed.lib_dir()}" in flags and "-lcconv" in flags and "-lm" in flags
    assert ("-fopenmp" in flags) == cconv.openmp_enabled()
    assert os.path.isfile(_embed.static_library())
    # the rest of `python -m cconv` is still the CLI
    assert run([sys.executable, "-m", "cconv", "--version"]).strip() == f"cconv {cconv.__version__}"
    bad = subprocess.run([sys.executable, "-m", "cconv", "--cflags", "--nope"],
                         check=False, capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr


def test_capsule():
    capsule = cconv._C_API
    assert type(capsule).__name__ == "PyCapsule"
    assert "cconv._C_API" in repr(capsule)
    from cconv import _kernels

    assert _kernels.C_ABI_VERSION == (1, 0)


# ---------------------------------------------------------------- the example

def example_network(x):
    """examples/c/convnet.c with cconv.ops (same weight formulas)."""
    k = np.arange(4 * 9)
    w1 = (((k * 37) % 17 - 8) / 16.0).astype(np.float32).reshape(4, 1, 3, 3)
    b1 = ((np.arange(4) - 1.5) / 8).astype(np.float32)
    k = np.arange(8 * 4 * 9)
    w2 = (((k * 29) % 19 - 9) / 32.0).astype(np.float32).reshape(8, 4, 3, 3)
    b2 = (np.arange(8) / 16).astype(np.float32)
    y = np.maximum(ops.conv2d(x[None, None], w1, b1, padding=1), 0)
    y = ops.max_pool2d(y, 2)
    y = np.maximum(ops.conv2d(y, w2, b2), 0)
    return ops.avg_pool2d(y, y.shape[2:]).ravel()


def features(stdout):
    line = next(ln for ln in stdout.splitlines() if ln.startswith("features"))
    return np.array([float(v) for v in line.split()[1:]])


@pytest.fixture(scope="module")
def convnet(tmp_path_factory):
    if shutil.which("make") is None:
        pytest.skip("needs make")
    out = tmp_path_factory.mktemp("convnet")
    run(["make", "-s", "-C", str(EXAMPLE_DIR), f"O={out}", f"PYTHON={sys.executable}",
         f"CC={CC}", "CFLAGS=-O2 -Wall -Wextra -Werror"])
    return out / "convnet"


@needs_cc
def test_example_generated_image(convnet):
    out = run([str(convnet)])
    assert f"cconv {cconv.__version__}" in out
    i, j = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    x = (((i * i + 3 * j) % 17) / 16.0).astype(np.float32)
    np.testing.assert_allclose(features(out), example_network(x), rtol=1e-5, atol=1e-6)


@needs_cc
@pytest.mark.parametrize("kind", ["P5", "P2", "P5-16bit"])
def test_example_pgm_image(convnet, tmp_path, kind):
    rng = np.random.default_rng(7)
    h, w = 23, 30                                  # odd sizes: pooling drops a row
    maxval = 65535 if kind == "P5-16bit" else 255
    img = rng.integers(0, maxval + 1, size=(h, w))
    path = tmp_path / "image.pgm"
    header = f"{kind[:2]}\n# a comment\n{w} {h}\n{maxval}\n".encode()
    if kind == "P2":
        body = "\n".join(" ".join(str(v) for v in row) for row in img).encode()
    else:
        body = img.astype(">u2" if maxval > 255 else np.uint8).tobytes()
    path.write_bytes(header + body)
    out = run([str(convnet), str(path)])
    assert f"input  1x1x{h}x{w}" in out
    x = (img.astype(np.float32) / np.float32(maxval)).astype(np.float32)
    np.testing.assert_allclose(features(out), example_network(x), rtol=1e-5, atol=1e-6)


@needs_cc
def test_example_bad_input_fails_cleanly(convnet, tmp_path):
    path = tmp_path / "bad.pgm"
    path.write_bytes(b"P5\n4 4\n255\n\x00\x01")   # truncated
    proc = subprocess.run([str(convnet), str(path)], check=False, capture_output=True, text=True)
    assert proc.returncode == 1 and "truncated" in proc.stderr


# ---------------------------------------------------------------- the C test program

@needs_cc
def test_c_program_bad_arguments_and_references(tmp_path):
    exe = tmp_path / "test_capi"
    run([CC, "-O1", "-Wall", "-Wextra", "-Werror", str(C_TEST), "-o", str(exe),
         *cconv_flags("--cflags", "--libs"), "-pthread"])
    out = run([str(exe)])
    assert out.strip().endswith(", 0 failures"), out


@needs_cc
@pytest.mark.slow
def test_c_program_under_sanitizers(tmp_path):
    """The same program and the whole C core built with ASan + UBSan."""
    flags = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-omit-frame-pointer",
             "-fno-sanitize-recover=undefined", "-fopenmp",
             f"-I{CORE_DIR}", f"-I{cconv.get_include()}"]
    sources = sorted(CORE_DIR.glob("*.c")) + [C_TEST]

    def compile_one(src):
        obj = tmp_path / (src.stem + ".o")
        run([CC, *flags, "-c", str(src), "-o", str(obj)])
        return str(obj)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        objs = list(pool.map(compile_one, sources))
    exe = tmp_path / "test_capi_asan"
    run([CC, *flags, *objs, "-o", str(exe), "-lm", "-pthread"])
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=1",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    out = run([str(exe), "100"], env=env)
    assert out.strip().endswith(", 0 failures"), out


# ---------------------------------------------------------------- ctypes over libcconv.a

I64, INT, DBL = ctypes.c_int64, ctypes.c_int, ctypes.c_double
F32, F64 = 1, 2
DTYPE = {np.dtype(np.float32): F32, np.dtype(np.float64): F64}


def _params(name, fields, defaults):
    head = [("struct_size", ctypes.c_size_t), ("dtype", INT), ("num_threads", INT)]
    cls = type(name, (ctypes.Structure,), {"_fields_": head + fields})

    def make(dtype=np.float32, **kw):
        p = cls()
        p.struct_size = ctypes.sizeof(cls)
        p.dtype = DTYPE[np.dtype(dtype)]
        for k, v in {**defaults, **kw}.items():
            setattr(p, k, v)
        return p

    cls.make = staticmethod(make)
    return cls


def _i64(names):
    return [(n, I64) for n in names.split()]


# mirrors of include/cconv.h; test_struct_layout checks them against the compiler
Conv2d = _params("Conv2d", _i64("n c_in h w c_out kh kw stride_h stride_w pad_top "
                                "pad_bottom pad_left pad_right dil_h dil_w groups"),
                 {"stride_h": 1, "stride_w": 1, "dil_h": 1, "dil_w": 1, "groups": 1})
Conv1d = _params("Conv1d", _i64("n c_in l c_out k stride pad_left pad_right dilation groups"),
                 {"stride": 1, "dilation": 1, "groups": 1})
Pool2d = _params("Pool2d", _i64("n c h w kh kw stride_h stride_w pad_h pad_w dil_h dil_w")
                 + [("ceil_mode", INT), ("count_include_pad", INT)],
                 {"dil_h": 1, "dil_w": 1, "count_include_pad": 1})
Pool1d = _params("Pool1d", _i64("n c l k stride pad dilation")
                 + [("ceil_mode", INT), ("count_include_pad", INT)],
                 {"dilation": 1, "count_include_pad": 1})
Gemm = _params("Gemm", [("trans_a", INT), ("trans_b", INT)] + _i64("m n k lda ldb ldc")
               + [("alpha", DBL), ("beta", DBL)], {"alpha": 1.0})
Eigh = _params("Eigh", _i64("n lda") + [("upper", INT)], {})
STRUCTS = {"cconv_conv2d_params_t": (Conv2d, "groups"), "cconv_conv1d_params_t": (Conv1d, "groups"),
           "cconv_pool2d_params_t": (Pool2d, "count_include_pad"),
           "cconv_pool1d_params_t": (Pool1d, "count_include_pad"),
           "cconv_gemm_params_t": (Gemm, "beta"), "cconv_eigh_params_t": (Eigh, "upper")}


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    """The static library turned into a shared one, for ctypes."""
    if CC is None or sys.platform == "win32":
        pytest.skip("needs a Unix C compiler")
    so = tmp_path_factory.mktemp("lib") / "libcconv_test.so"
    omp = ["-fopenmp"] if cconv.openmp_enabled() else []
    lib = _embed.static_library()
    whole = ([f"-Wl,-force_load,{lib}"] if sys.platform == "darwin"
             else ["-Wl,--whole-archive", lib, "-Wl,--no-whole-archive"])
    run([CC, "-shared", "-o", str(so), *whole, *omp, "-lm"])
    lib = ctypes.CDLL(str(so))
    lib.cconv_version.restype = ctypes.c_char_p
    lib.cconv_strerror.restype = ctypes.c_char_p
    return lib


def call(lib, name, p, *buffers):
    """Call cconv_<name>(&p, buf, len, ...); None stands for (NULL, 0). Returns the status."""
    args = [ctypes.byref(p)]
    for b in buffers:
        if b is None:
            args += [None, I64(0)]
        else:
            assert b.flags.c_contiguous
            args += [ctypes.c_void_p(b.ctypes.data), I64(b.size)]
    return getattr(lib, "cconv_" + name)(*args)


def ok(lib, name, p, *buffers):
    status = call(lib, name, p, *buffers)
    assert status == 0, f"cconv_{name}: {lib.cconv_strerror(status).decode()}"


def tol(dtype):
    if np.dtype(dtype) == np.float32:
        return {"rtol": 2e-5, "atol": 2e-5}
    return {"rtol": 1e-11, "atol": 1e-11}


@needs_cc
def test_struct_layout(tmp_path):
    """The ctypes mirrors above have the compiler's layout of cconv.h."""
    src = tmp_path / "layout.c"
    src.write_text("#include <stdio.h>\n#include <stddef.h>\n#include <cconv.h>\nint main(void) {\n"
                   + "".join(f'    printf("{s} %zu %zu\\n", sizeof({s}), offsetof({s}, {last}));\n'
                             for s, (_, last) in STRUCTS.items())
                   + "    return 0;\n}\n")
    run([CC, str(src), "-o", str(tmp_path / "layout"), f"-I{cconv.get_include()}"])
    for line in run([str(tmp_path / "layout")]).splitlines():
        name, size, offset = line.split()
        cls, last = STRUCTS[name]
        assert (ctypes.sizeof(cls), getattr(cls, last).offset) == (int(size), int(offset)), name


def test_versions(lib):
    assert lib.cconv_version().decode() == cconv.__version__
    assert lib.cconv_abi_version() == 1000
    assert lib.cconv_strerror(6).decode().startswith("a buffer is smaller")
    assert lib.cconv_openmp_enabled() == int(cconv.openmp_enabled())


CONV_CASES = [
    # x shape, (c_out, kh, kw), stride, pads (t, b, l, r), dilation, groups
    ((2, 3, 9, 8), (4, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    ((1, 4, 11, 7), (6, 3, 2), (2, 1), (0, 2, 1, 0), (1, 2), 2),
    ((3, 4, 6, 6), (8, 3, 3), (1, 2), (1, 1, 1, 1), (2, 1), 4),       # depthwise x2
    ((2, 5, 5, 9), (3, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),       # pointwise
    ((0, 2, 5, 5), (2, 3, 3), (1, 1), (0, 0, 0, 0), (1, 1), 1),       # empty batch
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_matches_ops(lib, rng, dtype, case):
    xs, (co, kh, kw), (sh, sw), (pt, pb, pl, pr), (dh, dw), g = case
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal((co, xs[1] // g, kh, kw)).astype(dtype)
    b = rng.standard_normal(co).astype(dtype)
    kw_ops = {"stride": (sh, sw), "padding": ((pt, pb), (pl, pr)), "dilation": (dh, dw),
              "groups": g}
    ref = ops.conv2d(x, w, b, **kw_ops)
    p = Conv2d.make(dtype, n=xs[0], c_in=xs[1], h=xs[2], w=xs[3], c_out=co, kh=kh, kw=kw,
                    stride_h=sh, stride_w=sw, pad_top=pt, pad_bottom=pb, pad_left=pl,
                    pad_right=pr, dil_h=dh, dil_w=dw, groups=g, num_threads=2)
    oh, ow = I64(), I64()
    assert lib.cconv_conv2d_output_shape(ctypes.byref(p), ctypes.byref(oh), ctypes.byref(ow)) == 0
    assert (xs[0], co, oh.value, ow.value) == ref.shape
    y = np.empty(ref.shape, dtype)
    ok(lib, "conv2d_forward", p, x, w, b, y)
    np.testing.assert_allclose(y, ref, **tol(dtype))
    dy = rng.standard_normal(ref.shape).astype(dtype)
    rdx, rdw, rdb = ops.conv2d_backward(dy, x, w, **kw_ops)
    dx, dwt, db = np.empty_like(x), np.empty_like(w), np.empty_like(b)
    ok(lib, "conv2d_backward_input", p, dy, w, dx)
    ok(lib, "conv2d_backward_weight", p, dy, x, dwt, db)
    for got, want in ((dx, rdx), (dwt, rdw), (db, rdb)):
        np.testing.assert_allclose(got, want, **tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv1d_matches_ops(lib, rng, dtype):
    x = rng.standard_normal((2, 4, 19)).astype(dtype)
    w = rng.standard_normal((6, 2, 3)).astype(dtype)
    kw_ops = {"stride": 2, "padding": ((2, 1),), "dilation": 2, "groups": 2}
    ref = ops.conv1d(x, w, None, **kw_ops)
    p = Conv1d.make(dtype, n=2, c_in=4, l=19, c_out=6, k=3, stride=2, pad_left=2, pad_right=1,
                    dilation=2, groups=2)
    y = np.empty(ref.shape, dtype)
    ok(lib, "conv1d_forward", p, x, w, None, y)
    np.testing.assert_allclose(y, ref, **tol(dtype))
    dy = rng.standard_normal(ref.shape).astype(dtype)
    rdx, rdw, _ = ops.conv1d_backward(dy, x, w, **kw_ops)
    dx, dw = np.empty_like(x), np.empty_like(w)
    ok(lib, "conv1d_backward_input", p, dy, w, dx)
    ok(lib, "conv1d_backward_weight", p, dy, x, dw, None)
    np.testing.assert_allclose(dx, rdx, **tol(dtype))
    np.testing.assert_allclose(dw, rdw, **tol(dtype))


POOL_CASES = [
    # kernel, stride (None: kernel), padding, dilation, ceil_mode, count_include_pad
    ((2, 2), None, (0, 0), (1, 1), False, True),
    ((3, 3), (2, 2), (1, 1), (1, 1), True, False),
    ((3, 2), (2, 1), (1, 0), (2, 1), True, True),
    ((4, 3), (3, 2), (2, 1), (1, 1), False, False),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", POOL_CASES)
def test_pool2d_matches_ops(lib, rng, dtype, case):
    k, s, pad, dil, ceil, cip = case
    x = rng.standard_normal((2, 3, 11, 10)).astype(dtype)
    p = Pool2d.make(dtype, n=2, c=3, h=11, w=10, kh=k[0], kw=k[1],
                    stride_h=s[0] if s else 0, stride_w=s[1] if s else 0,
                    pad_h=pad[0], pad_w=pad[1], dil_h=dil[0], dil_w=dil[1],
                    ceil_mode=int(ceil), count_include_pad=int(cip))
    ref, ref_idx = ops.max_pool2d(x, k, s, pad, dil, ceil, return_indices=True)
    y, idx = np.empty(ref.shape, dtype), np.empty(ref.shape, np.int64)
    ok(lib, "max_pool2d_forward", p, x, y, idx)
    np.testing.assert_array_equal(y, ref)
    np.testing.assert_array_equal(idx, ref_idx)
    dy = rng.standard_normal(ref.shape).astype(dtype)
    dx = np.empty_like(x)
    ok(lib, "max_pool2d_backward", p, dy, idx, dx)
    np.testing.assert_allclose(dx, ops.max_pool2d_backward(dy, x, k, s, pad, dil, ceil, indices=idx),
                               **tol(dtype))
    if dil != (1, 1):
        assert call(lib, "avg_pool2d_forward", p, x, y) == 2        # CCONV_ERR_INVALID
        return
    ref = ops.avg_pool2d(x, k, s, pad, ceil, cip)
    y = np.empty(ref.shape, dtype)
    ok(lib, "avg_pool2d_forward", p, x, y)
    np.testing.assert_allclose(y, ref, **tol(dtype))
    dy = rng.standard_normal(ref.shape).astype(dtype)
    ok(lib, "avg_pool2d_backward", p, dy, dx)
    np.testing.assert_allclose(dx, ops.avg_pool2d_backward(dy, x.shape, k, s, pad, ceil, cip),
                               **tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pool1d_matches_ops(lib, rng, dtype):
    x = rng.standard_normal((2, 3, 17)).astype(dtype)
    p = Pool1d.make(dtype, n=2, c=3, l=17, k=4, stride=3, pad=2, ceil_mode=1, count_include_pad=0)
    ref, ref_idx = ops.max_pool1d(x, 4, 3, 2, 1, True, return_indices=True)
    y, idx = np.empty(ref.shape, dtype), np.empty(ref.shape, np.int64)
    ok(lib, "max_pool1d_forward", p, x, y, idx)
    np.testing.assert_array_equal(y, ref)
    np.testing.assert_array_equal(idx, ref_idx)
    dx = np.empty_like(x)
    ok(lib, "max_pool1d_backward", p, y, idx, dx)
    np.testing.assert_allclose(dx, ops.max_pool1d_backward(y, x, 4, 3, 2, 1, True, indices=idx),
                               **tol(dtype))
    ref = ops.avg_pool1d(x, 4, 3, 2, True, False)
    ok(lib, "avg_pool1d_forward", p, x, y)
    np.testing.assert_allclose(y, ref, **tol(dtype))
    ok(lib, "avg_pool1d_backward", p, y, dx)
    np.testing.assert_allclose(dx, ops.avg_pool1d_backward(y, x.shape, 4, 3, 2, True, False),
                               **tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_gemm_matches_numpy(lib, rng, dtype, ta, tb):
    m, n, k = 37, 29, 41
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    c = rng.standard_normal((m, n)).astype(dtype)
    ref = 0.5 * (a.T if ta else a).astype(np.float64) @ (b.T if tb else b) + 2.0 * c
    p = Gemm.make(dtype, trans_a=ta, trans_b=tb, m=m, n=n, k=k, alpha=0.5, beta=2.0)
    ok(lib, "gemm", p, a, b, c)
    np.testing.assert_allclose(c, ref, rtol=1e-4 if dtype == np.float32 else 1e-12,
                               atol=1e-4 if dtype == np.float32 else 1e-12)


def _eigh_check(lib, a, dtype, upper=0):
    n = a.shape[0]
    w, v = np.empty(n, dtype), np.empty((n, n), dtype)
    ok(lib, "eigh", Eigh.make(dtype, n=n, upper=upper), np.ascontiguousarray(a, dtype), w, v)
    a64 = a.astype(np.float64)
    ref_w = np.linalg.eigh(a64, UPLO="U" if upper else "L")[0]
    scale = max(1.0, np.abs(a64).max())
    eps = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(w, ref_w, atol=eps * scale * n)
    full = np.triu(a64) + np.triu(a64, 1).T if upper else np.tril(a64) + np.tril(a64, -1).T
    np.testing.assert_allclose(full @ v, v * w, atol=eps * scale * n)
    np.testing.assert_allclose(v.T.astype(np.float64) @ v, np.eye(n), atol=eps * n)
    return w, v


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 2, 5, 40, 97])
def test_eigh_matches_numpy(lib, rng, dtype, n):
    a = rng.standard_normal((n, n))
    _, v = _eigh_check(lib, a, dtype)
    gaps = np.diff(np.linalg.eigh(a)[0])
    if n > 1 and gaps.min() > 1e-3:
        # distinct eigenvalues: the vectors are numpy's up to sign
        v_ref = np.linalg.eigh(a)[1]
        np.testing.assert_allclose(np.abs(np.sum(v * v_ref, axis=0)), 1,
                                   atol=1e-3 if dtype == np.float32 else 1e-8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_eigh_hard_spectra(lib, rng, dtype):
    q, _ = np.linalg.qr(rng.standard_normal((30, 30)))
    for w in (np.repeat([-1.0, 2.0, 5.0], 10),              # repeated eigenvalues
              np.logspace(-8, 8, 30),                        # wide range
              np.zeros(30)):
        _eigh_check(lib, (q * w) @ q.T, dtype)
    _eigh_check(lib, np.diag(np.arange(30.0)[::-1]), dtype)  # already diagonal
    _eigh_check(lib, rng.standard_normal((12, 12)), dtype, upper=1)
    n = 16                                                     # Hessian-like: a graph Laplacian
    lap = 2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)
    w, _ = _eigh_check(lib, lap, dtype)
    np.testing.assert_allclose(w, 2 - 2 * np.cos(np.pi * np.arange(1, n + 1) / (n + 1)),
                               atol=1e-5 if dtype == np.float32 else 1e-12)


def test_eigh_agrees_with_linalg_eigh(lib, rng):
    a = rng.standard_normal((25, 25))
    a = a + a.T
    w, _ = _eigh_check(lib, a, np.float64)
    np.testing.assert_allclose(w, cconv.linalg.eigh(a)[0], atol=1e-11)


def test_threads(lib):
    assert lib.cconv_set_num_threads(-2) == 2
    try:
        assert lib.cconv_set_num_threads(3) == 0 and lib.cconv_get_num_threads() == 3
    finally:
        lib.cconv_set_num_threads(0)
    assert lib.cconv_get_num_threads() >= 1


# ---------------------------------------------------------------- a Cython extension

USER_PYX = '''
# cython: language_level=3, boundscheck=False, wraparound=False
"""A downstream extension: cconv's kernels from nogil code."""
from libc.stdint cimport int64_t
from cconv cimport capi
import numpy as np

capi.import_cconv()


def abi():
    return capi.cconv_abi_version(), capi.cconv_version().decode()


cdef check(int status):
    if status != capi.CCONV_SUCCESS:
        raise ValueError(capi.cconv_strerror(status).decode())


def conv2d(float[:, :, :, ::1] x, float[:, :, :, ::1] w, float[::1] b, int pad, int groups=1):
    cdef capi.cconv_conv2d_params_t p
    cdef int64_t oh, ow
    cdef int status
    capi.cconv_conv2d_params_init(&p)
    p.n, p.c_in, p.h, p.w = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    p.c_out, p.kh, p.kw = w.shape[0], w.shape[2], w.shape[3]
    p.pad_top = p.pad_bottom = p.pad_left = p.pad_right = pad
    p.groups = groups
    check(capi.cconv_conv2d_output_shape(&p, &oh, &ow))
    y = np.empty((p.n, p.c_out, oh, ow), np.float32)
    cdef float[:, :, :, ::1] yv = y
    with nogil:
        status = capi.cconv_conv2d_forward(
            &p, &x[0, 0, 0, 0], x.shape[0] * x.shape[1] * x.shape[2] * x.shape[3],
            &w[0, 0, 0, 0], w.shape[0] * w.shape[1] * w.shape[2] * w.shape[3],
            &b[0], b.shape[0], &yv[0, 0, 0, 0], yv.shape[0] * yv.shape[1] * yv.shape[2] * yv.shape[3])
    check(status)
    return y


def gemm(double[:, ::1] a, double[:, ::1] b):
    cdef capi.cconv_gemm_params_t p
    cdef int status
    capi.cconv_gemm_params_init(&p)
    p.dtype = capi.CCONV_FLOAT64
    p.m, p.k, p.n = a.shape[0], a.shape[1], b.shape[1]
    c = np.empty((a.shape[0], b.shape[1]))
    cdef double[:, ::1] cv = c
    with nogil:
        status = capi.cconv_gemm(&p, &a[0, 0], a.shape[0] * a.shape[1], &b[0, 0],
                                 b.shape[0] * b.shape[1], &cv[0, 0], cv.shape[0] * cv.shape[1])
    check(status)
    return c
'''

SETUP_PY = '''
import cconv
from Cython.Build import cythonize
from setuptools import Extension, setup

inc = [cconv.get_include()]
static = dict(define_macros=[("CCONV_LINK_STATIC", None)],
              extra_objects=[{lib!r}], extra_link_args={omp!r})
setup(ext_modules=cythonize(
    [Extension("cconv_user", ["cconv_user.pyx"], include_dirs=inc),
     Extension("cconv_user_static", ["cconv_user_static.pyx"], include_dirs=inc, **static)],
    include_path=[{pkg_parent!r}], quiet=True))
'''


@pytest.fixture(scope="module")
def user_ext(tmp_path_factory):
    if CC is None or sys.platform == "win32":
        pytest.skip("needs a Unix C compiler")
    pytest.importorskip("Cython")
    d = tmp_path_factory.mktemp("cconv_user")
    (d / "cconv_user.pyx").write_text(USER_PYX)
    (d / "cconv_user_static.pyx").write_text(USER_PYX)
    (d / "setup.py").write_text(SETUP_PY.format(
        lib=_embed.static_library(), omp=["-fopenmp"] if cconv.openmp_enabled() else [],
        pkg_parent=str(Path(cconv.__file__).parents[1])))
    # -O0: the generated C (memoryviews) takes 10 s per module to optimise
    run([sys.executable, "setup.py", "-q", "build_ext", "--inplace", "-j", "2"], cwd=d,
        env=dict(os.environ, CC=CC, CFLAGS="-O0 -g0"))
    sys.path.insert(0, str(d))
    try:
        import cconv_user
        import cconv_user_static
    finally:
        sys.path.remove(str(d))
    return d, cconv_user, cconv_user_static


@needs_cc
def test_cython_extension_through_capsule(user_ext, rng):
    _, mod, static = user_ext
    assert mod.abi() == (1000, cconv.__version__)
    x = rng.standard_normal((2, 4, 10, 9)).astype(np.float32)
    w = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    ref = ops.conv2d(x, w, b, padding=1, groups=2)
    for m in (mod, static):
        np.testing.assert_allclose(m.conv2d(x, w, b, 1, groups=2), ref, rtol=1e-5, atol=1e-5)
        with pytest.raises(ValueError, match="inconsistent"):
            m.conv2d(x, w, b, 1, groups=3)
        with pytest.raises(ValueError, match="smaller"):
            m.conv2d(x, w, b[:5], 1, groups=2)
    a, bb = rng.standard_normal((7, 5)), rng.standard_normal((5, 3))
    np.testing.assert_allclose(mod.gemm(a, bb), a @ bb, rtol=1e-12, atol=1e-12)


@needs_cc
def test_cython_extension_abi_mismatch(user_ext):
    d, _, _ = user_ext
    code = textwrap.dedent('''
        import ctypes, sys
        import cconv
        class Table(ctypes.Structure):
            _fields_ = [("abi_major", ctypes.c_int), ("abi_minor", ctypes.c_int)]
        table, name = Table(2, 0), b"cconv._C_API"
        new = ctypes.pythonapi.PyCapsule_New
        new.restype = ctypes.py_object
        new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        cconv._C_API = new(ctypes.addressof(table), name, None)
        try:
            import cconv_user
        except ImportError as exc:
            print(exc)
    ''')
    out = run([sys.executable, "-c", code], cwd=d)
    assert "cconv C API version mismatch" in out
    assert "ABI 1.0" in out and "ABI 2.0" in out and "rebuild" in out


def _windows_reference(x, w, stride, pads, groups):
    """conv2d by explicit windows, for outputs few and far apart (no padded copy)."""
    n, c, h, wd = x.shape
    co, cg, kh, kw = w.shape
    (sh, sw), (pt, pb, pl, pr) = stride, pads
    oh_n, ow_n = (h + pt + pb - kh) // sh + 1, (wd + pl + pr - kw) // sw + 1
    y = np.zeros((n, co, oh_n, ow_n))
    for oh in range(oh_n):
        for ow in range(ow_n):
            patch = np.zeros((n, c, kh, kw))
            for i in range(kh):
                for j in range(kw):
                    ih, iw = oh * sh - pt + i, ow * sw - pl + j
                    if 0 <= ih < h and 0 <= iw < wd:
                        patch[:, :, i, j] = x[:, :, ih, iw]
            for g in range(groups):
                pg = patch[:, g * cg:(g + 1) * cg]
                wg = w[g * (co // groups):(g + 1) * (co // groups)]
                y[:, g * (co // groups):(g + 1) * (co // groups), oh, ow] = \
                    np.einsum("nckl,ockl->no", pg, wg)
    return y


def _peak_rss_mb():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# stride, pads (t, b, l, r), groups: strides and paddings far beyond a 9x9 input
HUGE_CASES = [((1 << 24, 1 << 24), (0, 0, 0, 0), 1),
              ((1 << 28, 3), (0, 0, 0, 0), 1),
              ((1 << 40, 1 << 40), (1, 1, 1, 1), 1),
              ((1 << 20, 1 << 20), (1 << 20, 1 << 20, 1 << 20, 1 << 20), 4),   # depthwise
              ((1 << 20, 1 << 20), (1 << 20, 1 << 20, 1 << 20, 1 << 20), 1),
              ((2, 1 << 24), (0, 0, 1 << 24, 1 << 24), 2)]


@pytest.mark.parametrize("case", HUGE_CASES, ids=str)
def test_huge_strides_and_paddings_cost_what_the_output_costs(lib, rng, case):
    """A 1x1 output of a 9x9 input with stride 2^24 touched 6 GB (the direct
    kernel stored every column phase of the stride); padding 2^20 made the
    depthwise path allocate the padded plane (2^42 elements)."""
    import time
    stride, pads, groups = case
    x = rng.standard_normal((2, 4, 9, 9))
    w = rng.standard_normal((4, 4 // groups, 3, 3))
    ref = _windows_reference(x, w, stride, pads, groups)
    p = Conv2d.make(np.float64, n=2, c_in=4, h=9, w=9, c_out=4, kh=3, kw=3,
                    stride_h=stride[0], stride_w=stride[1], pad_top=pads[0], pad_bottom=pads[1],
                    pad_left=pads[2], pad_right=pads[3], groups=groups)
    rss0, t0 = _peak_rss_mb(), time.perf_counter()
    y = np.full(ref.shape, np.nan)
    ok(lib, "conv2d_forward", p, x, w, None, y)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(ref.shape)
    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty(4)
    ok(lib, "conv2d_backward_input", p, dy, w, dx)
    ok(lib, "conv2d_backward_weight", p, dy, x, dw, db)
    # the adjoint identity <dy, conv(x)> = <dx, x> and = <dw, w>
    np.testing.assert_allclose(np.vdot(dx, x), np.vdot(dy, ref), rtol=1e-10)
    np.testing.assert_allclose(np.vdot(dw, w), np.vdot(dy, ref), rtol=1e-10)
    np.testing.assert_allclose(db, dy.sum(axis=(0, 2, 3)), rtol=1e-12)
    assert time.perf_counter() - t0 < 5
    assert _peak_rss_mb() - rss0 < 200, "a buffer was sized by the stride or padding"
