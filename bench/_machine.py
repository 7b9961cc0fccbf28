"""The machine description every bench script writes beside its timings.

Absolute times only mean something with the CPU, the thread settings and
the load of other processes at the time (these machines are shared), so each
result file carries them. Scripts add their own anchors' versions as extras.
"""
import os
import platform
import time

import numpy as np

import cconv


def cpu_model():
    """The CPU's model name from /proc/cpuinfo, else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(**extra):
    """CPU, CPUs available, versions, OpenMP settings, load average, date; plus extra."""
    info = {
        "cpu": cpu_model(), "cpus_available": len(os.sched_getaffinity(0)),
        "python": platform.python_version(), "numpy": np.__version__,
        "cconv": cconv.__version__, "openmp": cconv.openmp_enabled(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
        "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT"),
        # other processes' load: on a shared machine, absolute times drift with it
        "load_average": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    info.update(extra)
    return info


# Committed results live in bench/results; a plain run writes beside them in an
# untracked folder so that trying the benches never dirties the checkout.
SAVED_RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
LOCAL_RESULTS = os.path.join(SAVED_RESULTS, "local")


def results_dir():
    """bench/results/local (untracked), or bench/results with CCONV_BENCH_SAVE=1."""
    from pathlib import Path

    saving = os.environ.get("CCONV_BENCH_SAVE") == "1"
    path = Path(SAVED_RESULTS if saving else LOCAL_RESULTS)
    path.mkdir(parents=True, exist_ok=True)
    return path
