"""Build the Cython/C core.

OpenMP is detected by compiling a small test program with -fopenmp; without it
the build warns and produces a serial library (cconv.openmp_enabled() -> False).
The C core is compiled for the baseline ISA; the hot micro-kernels carry their
own target attributes and are chosen at run time from the CPU's features, so a
wheel built here runs on any x86-64.
"""
import os
import sys
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent
CORE = Path("src/cconv/_core")
CORE_SOURCES = sorted(str(p) for p in (HERE / CORE).glob("*.c"))
CORE_SOURCES = [str(Path(p).relative_to(HERE)) for p in CORE_SOURCES]
INCLUDE = Path("src/cconv/include")          # the public C API header, cconv.h

OPENMP_TEST = r"""
#include <omp.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    return n > 0 ? 0 : 1;
}
"""


def _compiler_has_openmp(compiler):
    """Compile and link a tiny OpenMP program with the compiler setuptools uses."""
    tmp = tempfile.mkdtemp(prefix="cconv-omp-")
    try:
        src = os.path.join(tmp, "omp_test.c")
        with open(src, "w") as f:
            f.write(OPENMP_TEST)
        objs = compiler.compile([src], output_dir=tmp, extra_postargs=["-fopenmp"])
        compiler.link_executable(objs, os.path.join(tmp, "omp_test"),
                                 extra_postargs=["-fopenmp"])
        return True
    except Exception:  # any compile or link failure means: no OpenMP
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class BuildExt(build_ext):
    def build_extensions(self):
        is_msvc = self.compiler.compiler_type == "msvc"
        if is_msvc:
            flags, link = ["/O2", "/openmp"], []
            openmp = True
        else:
            openmp = (os.environ.get("CCONV_NO_OPENMP") != "1"
                      and _compiler_has_openmp(self.compiler))
            flags = ["-O3", "-fno-math-errno", "-fno-semantic-interposition"]
            link = []
            if openmp:
                flags.append("-fopenmp")
                link.append("-fopenmp")
            extra = os.environ.get("CCONV_EXTRA_CFLAGS", "").split()
            flags += extra
            link += [f for f in extra if f.startswith("-fsanitize")]
        if not openmp:
            warnings.warn("cconv: the C compiler has no OpenMP support; "
                          "building the kernels serial (cconv.openmp_enabled() "
                          "will return False)")
            print("WARNING: building cconv without OpenMP", file=sys.stderr)
        for ext in self.extensions:
            ext.extra_compile_args = flags + list(ext.extra_compile_args or [])
            ext.extra_link_args = link + list(ext.extra_link_args or [])
        super().build_extensions()
        self.build_static_library(openmp and not is_msvc, is_msvc)

    def build_static_library(self, openmp, is_msvc):
        """The C core once more as cconv/lib/libcconv.a, for C programs
        (include/cconv.h, docs/c-api.md): compiled without Python's flags'
        debug info and without CCONV_EXTRA_CFLAGS, so it is small and
        portable; plus cconv/lib/pkgconfig/cconv.pc, which `python -m cconv
        --cflags --libs` reads."""
        if is_msvc:
            warnings.warn("cconv: no static library with MSVC (the C API is "
                          "available to extensions through cconv._C_API)")
            return
        from concurrent.futures import ThreadPoolExecutor

        from setuptools.errors import CompileError, LibError

        pkg_dir = Path(self.get_ext_fullpath("cconv._kernels")).parent
        lib_dir = pkg_dir / "lib"
        flags = ["-O3", "-g0", "-fPIC", "-fno-math-errno"] + (["-fopenmp"] if openmp else [])
        tmp = os.path.join(self.build_temp, "libcconv")
        inputs = [Path(p) for p in CORE_SOURCES] + list(CORE.glob("*.h")) + list(INCLUDE.glob("*.h"))
        lib = lib_dir / "libcconv.a"
        if (not self.force and lib.exists() and (lib_dir / "pkgconfig" / "cconv.pc").exists()
                and lib.stat().st_mtime >= max(p.stat().st_mtime for p in inputs)):
            return
        try:
            # one compiler process per source, in parallel (gemm.c alone takes seconds)
            with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                objs = [o for objs in pool.map(
                    lambda src: self.compiler.compile(
                        [src], output_dir=tmp, include_dirs=[str(CORE), str(INCLUDE)],
                        extra_postargs=flags),
                    CORE_SOURCES) for o in objs]
            lib_dir.mkdir(parents=True, exist_ok=True)
            self.compiler.create_static_lib(objs, "cconv", output_dir=str(lib_dir))
        except (CompileError, LibError, OSError) as exc:
            # the extension is built; only C programs lose the library
            warnings.warn(f"cconv: building the static library libcconv.a failed: {exc}")
            return
        (lib_dir / "pkgconfig").mkdir(exist_ok=True)
        omp = " -fopenmp" if openmp else ""
        (lib_dir / "pkgconfig" / "cconv.pc").write_text(
            "prefix=${pcfiledir}/../..\n"
            "includedir=${prefix}/include\n"
            "libdir=${prefix}/lib\n\n"
            "Name: cconv\n"
            "Description: C API of the cconv kernels (convolution, pooling, GEMM, eigh)\n"
            f"Version: {self.distribution.get_version()}\n"
            "Cflags: -I${includedir}\n"
            f"Libs: -L${{libdir}} -lcconv{omp} -lm\n")

    def copy_extensions_to_source(self):
        """--inplace and editable installs: the static library goes along."""
        super().copy_extensions_to_source()
        built = Path(self.build_lib) / "cconv" / "lib"
        if built.is_dir():
            pkg = Path(self.get_finalized_command("build_py").get_package_dir("cconv"))
            shutil.copytree(built, pkg / "lib", dirs_exist_ok=True)


def make_extensions():
    from Cython.Build import cythonize

    common = dict(
        include_dirs=[str(CORE), str(INCLUDE), np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
    )
    exts = [
        # depends: a change to an _impl.h header alone must rebuild the kernels
        Extension("cconv._kernels", ["src/cconv/_kernels.pyx"] + CORE_SOURCES,
                  depends=sorted(str(p) for p in [*CORE.glob("*.h"), *INCLUDE.glob("*.h")]),
                  **common),
        # LAPACK through scipy.linalg.cython_lapack (its .pxd is needed at build
        # time); separate so that `import cconv` does not import scipy.linalg.
        Extension("cconv._lapack", ["src/cconv/_lapack.pyx"],
                  include_dirs=[np.get_include()],
                  define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")]),
        # bias/ReLU epilogues of compiled inference plans (cconv.compiled)
        Extension("cconv._plan", ["src/cconv/_plan.pyx"], include_dirs=[np.get_include()],
                  define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")]),
    ]
    return cythonize(
        exts,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    )


setup(ext_modules=make_extensions(), cmdclass={"build_ext": BuildExt})
