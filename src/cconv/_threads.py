"""Thread count of cconv's kernels.

One process-wide count, read once at the start of every kernel call (so a
change from another Python thread never affects a call already running).
The default honours OMP_NUM_THREADS, then the CPUs this process may run on
(affinity mask and cgroup CPU quota, as containers set them).
"""
import contextlib
import math
import os
import threading

_lock = threading.Lock()
_num_threads = None


def _cgroup_cpu_limit():
    """CPUs allowed by a cgroup v2 (cpu.max) or v1 (cfs quota) limit, or None."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            return max(1, math.ceil(int(quota) / int(period)))
        return None
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            quota = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            period = int(f.read())
        if quota > 0 and period > 0:
            return max(1, math.ceil(quota / period))
    except (OSError, ValueError):
        pass
    return None


def available_cpus():
    """CPUs this process can use: affinity mask, capped by a cgroup quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    return max(1, min(n, limit) if limit else n)


def _from_environment():
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if value:
        try:
            n = int(value)
            if n >= 1:
                return n
        except ValueError:
            pass
    return available_cpus()


# Spins (PAUSE loops) an idle OpenMP thread makes before it sleeps: 1-2 ms
# on Zen 3, a tenth of GNU OpenMP's default.
BOUNDED_SPINCOUNT = "30000"


def bound_openmp_spin_wait():
    """Let idle OpenMP threads spin briefly, then sleep, unless the user chose.

    cconv runs inside other people's processes, next to numpy's BLAS pool and
    other programs. GNU OpenMP's default keeps idle threads spinning for
    several ms after each parallel region; on a 2-core machine shared with
    anything else that made a training loop 5-10x slower (digits, 2 threads,
    loaded machine: 11.6 s spinning, 2.4 s passive). Sleeping at once
    (OMP_WAIT_POLICY=passive, cconv's earlier default) pays a 20-30 us wake-up
    on every parallel region instead: LeNet at batch 64 on 2 threads ran
    0.39-0.67 ms per call back to back with sleeping threads, 0.35-0.61 ms
    with GOMP_SPINCOUNT=30000, and digits training, alone or next to a busy
    process, took as long either way within the noise
    (bench/bench_wait_policy.py). Next to another pool spinning at the same
    time (onnxruntime's, in the same process) passive waiting is better
    (docs/performance.md, Threads). The runtime reads the variables once, when
    the kernels' library loads, so this runs at `import cconv`, before any
    extension is loaded. Setting
    OMP_WAIT_POLICY or GOMP_SPINCOUNT yourself opts out.
    """
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = BOUNDED_SPINCOUNT


def get_num_threads():
    """Number of threads cconv's kernels use at most."""
    global _num_threads
    if _num_threads is None:
        with _lock:
            if _num_threads is None:
                _num_threads = _from_environment()
    return _num_threads


def set_num_threads(n):
    """Set the number of threads cconv's kernels use (process-wide)."""
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: n must be an integer >= 1, got {n!r}")
    with _lock:
        _num_threads = n


@contextlib.contextmanager
def threads(n):
    """Run the block with n kernel threads; restores the previous count after."""
    previous = get_num_threads()
    set_num_threads(n)
    try:
        yield n
    finally:
        set_num_threads(previous)
