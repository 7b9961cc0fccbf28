#!/usr/bin/env bash
# Build the C core and the Cython layer with AddressSanitizer and
# UndefinedBehaviorSanitizer in a separate directory, then run the kernel
# tests against that build and the C GEMM test.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=$(mktemp -d /tmp/cconv-asan.XXXXXX)
trap 'rm -rf "$build"' EXIT

flags="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"

# C-level GEMM test (all transposes, odd sizes, both kernels, 1 and 2 threads)
gcc -O1 -g $flags -fopenmp -Isrc/cconv/_core src/cconv/_core/gemm.c \
    src/cconv/_core/threads.c src/cconv/_core/tests/test_gemm.c -o "$build/test_gemm" -lm
"$build/test_gemm"

# The extension, built out of tree with the sanitizers (the build tools are not
# in the environment when the package was installed with build isolation)
python -m pip install -q "Cython>=3.0" "setuptools>=77"   # >=77: the SPDX licence string
cp -r setup.py pyproject.toml README.md src "$build/"
(cd "$build" && CCONV_EXTRA_CFLAGS="$flags -O1 -g" python setup.py -q build_ext --inplace 2>&1 | tail -n 3)
asan_lib=$(gcc -print-file-name=libasan.so)
ubsan_lib=$(gcc -print-file-name=libubsan.so)
# Python itself is not instrumented: leaks at interpreter exit are not ours.
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
LD_PRELOAD="$asan_lib $ubsan_lib" PYTHONPATH="$build/src" \
    python -m pytest -q -p no:cacheprovider -m "not slow" \
        tests/test_conv.py tests/test_pool.py tests/test_gemm.py tests/test_convolve.py \
        tests/test_bad_input.py tests/test_fuzz_ops.py tests/test_fuzz_regressions.py \
        tests/test_chain.py \
        tests/test_conv_paths.py::test_direct_weight_gradient_matches_the_reference \
        tests/test_conv_paths.py::test_direct_weight_gradient_ignores_inputs_the_layer_never_reads \
        tests/test_conv_paths.py::test_winograd_rows_accuracy \
        tests/test_conv_paths.py::test_winograd_rows_non_finite_inputs \
        tests/test_conv_paths.py::test_winograd_non_finite_input_stays_in_its_receptive_field \
        tests/test_conv_paths.py::test_winograd_input_gradient_keeps_a_non_finite_grad_local \
        tests/test_conv_paths.py::test_huge_strides_cost_what_the_output_costs \
        tests/test_threads.py::test_conv_is_bit_identical_at_any_thread_count \
        tests/test_capi.py::test_huge_strides_and_paddings_cost_what_the_output_costs

# The public C API (include/cconv.h) from C: bad arguments -> status codes,
# naive references for every operation, concurrent calls (tests/c/test_capi.c),
# with the whole C core instrumented.
gcc -O1 -g $flags -fopenmp -Isrc/cconv/_core -Isrc/cconv/include src/cconv/_core/*.c \
    tests/c/test_capi.c -o "$build/test_capi" -lm -pthread
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 "$build/test_capi" 100
# conv2d's algorithms and epilogue through the core's own entry points
gcc -O1 -g $flags -fopenmp -Isrc/cconv/_core -Isrc/cconv/include src/cconv/_core/*.c \
    src/cconv/_core/tests/test_conv_paths.c -o "$build/test_conv_paths" -lm -pthread
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 "$build/test_conv_paths"
echo "sanitizers: clean"
