"""Compiler flags for C programs that use cconv's C API (docs/c-api.md).

`python -m cconv --cflags --libs` prints what `cc` needs to compile and link
against the static library shipped in the package:

    cc app.c $(python -m cconv --cflags --libs)

The flags come from lib/pkgconfig/cconv.pc, written by the build next to
libcconv.a (pkg-config can read it too: PKG_CONFIG_PATH=$(python -m cconv
--pkgconfig-dir) pkg-config --cflags --libs cconv). Nothing here imports
the kernels, so this stays fast.
"""
import os
import sys

FLAGS = ("--cflags", "--libs", "--include-dir", "--lib-dir", "--pkgconfig-dir")

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def include_dir():
    """Directory of cconv.h and cconv_capsule.h."""
    return os.path.join(_PACKAGE_DIR, "include")


def lib_dir():
    """Directory of libcconv.a."""
    return os.path.join(_PACKAGE_DIR, "lib")


def pkgconfig_dir():
    """Directory of cconv.pc."""
    return os.path.join(lib_dir(), "pkgconfig")


def static_library():
    """Path of libcconv.a (it may be missing: see `flags`)."""
    return os.path.join(lib_dir(), "libcconv.a")


def _pc_fields():
    path = os.path.join(pkgconfig_dir(), "cconv.pc")
    if not os.path.exists(path) or not os.path.exists(static_library()):
        raise FileNotFoundError(
            f"cconv: the static C library is not built ({static_library()} or {path} "
            "is missing); it is built with the extension on GCC/Clang platforms "
            "(`pip install` or `python setup.py build_ext --inplace`)")
    values = {"includedir": include_dir(), "libdir": lib_dir()}
    fields = {}
    with open(path) as f:
        for line in f:
            key, sep, value = line.partition(":")
            if sep and key.strip() in ("Cflags", "Libs"):
                for name, repl in values.items():
                    value = value.replace("${" + name + "}", repl)
                fields[key.strip()] = value.strip()
    return fields


def cflags():
    """Compile flags: -I<include dir>."""
    return _pc_fields().get("Cflags", f"-I{include_dir()}")


def libs():
    """Link flags: -L<lib dir> -lcconv, plus -fopenmp (when built with OpenMP) and -lm."""
    return _pc_fields()["Libs"]


def main(argv):
    """Print the flags asked for in argv, on one line (pkg-config style); exit code."""
    unknown = [a for a in argv if a not in FLAGS]
    if unknown or not argv:
        print(f"usage: python -m cconv {' '.join('[' + f + ']' for f in FLAGS)}",
              file=sys.stderr)
        return 2
    getters = {"--cflags": cflags, "--libs": libs, "--include-dir": include_dir,
               "--lib-dir": lib_dir, "--pkgconfig-dir": pkgconfig_dir}
    try:
        out = [getters[a]() for a in argv]
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(" ".join(out))
    return 0
