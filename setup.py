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


def make_extensions():
    from Cython.Build import cythonize

    common = dict(
        include_dirs=[str(CORE), np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
    )
    exts = [
        Extension("cconv._kernels", ["src/cconv/_kernels.pyx"] + CORE_SOURCES, **common),
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
