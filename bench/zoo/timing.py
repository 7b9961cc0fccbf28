"""Interleaved, median timing for calls that last from 0.1 ms to seconds.

Reuses bench_lenet's wait_until_quiet (a pause until no thread of the process
burns CPU, so one engine's idle spinning pool does not slow the next). Its
calibration (10 calls per engine) is too slow for a VGG-16 batch or a
training step; here one warm call sets the loops per sample.
"""
import time

from bench_lenet import sample_rounds, wait_until_quiet  # bench/ is on sys.path (bench_zoo.py)


def interleaved(fns, rounds, warmup=1, min_time=0.05):
    """{name: median seconds per call}: rounds of one sample per engine, round-robin."""
    loops = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            fn()
        wait_until_quiet()
        t0 = time.perf_counter()
        fn()
        loops[name] = max(1, int(min_time / max(time.perf_counter() - t0, 1e-7)))
    return sample_rounds(fns, loops, rounds)
