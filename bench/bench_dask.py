"""Batch inference on Dask (plugins/cconv-dask) against single-process cconv.

LeNet-5 on N images (1x28x28), batch 128, chunks of 512 images (8 tasks):

- single process: cconv.predict(net, x, batch_size=128) at 1 and at all threads;
- Dask LocalCluster (worker processes on loopback) with 1 worker x 1 thread
  (cconv gets every CPU) and 2 workers x 1 thread (the CPUs split between them),
  the input already on the cluster (persisted), the result gathered back.

Overhead per chunk: an empty model (Flatten) on 1-image chunks, so each task
does nearly nothing: wall time / chunks; next to it a plain map_blocks over
the same chunks (Dask's own cost per task on this machine). Also the real
workload's extra time over the best single-process run, divided by its chunks.

Every configuration runs in interleaved rounds (so load from other processes
hits all alike); the figure is the median round. Needs dask[distributed] and
the plugin (pip install plugins/cconv-dask, or it is taken from the source).

    python bench/bench_dask.py            # JSON in bench/results/dask.json
    python bench/bench_dask.py --quick
"""
import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import cconv
from cconv.graph import Sequential
from cconv.nn import Conv2d, Flatten, Linear, MaxPool2d, ReLU

try:
    import cconv_dask
except ImportError:
    PLUGIN_SRC = Path(__file__).resolve().parent.parent / "plugins" / "cconv-dask" / "src"
    sys.path.insert(0, str(PLUGIN_SRC))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PLUGIN_SRC), os.environ.get("PYTHONPATH")) if p)  # for the workers
    import cconv_dask

import dask.array as da
import distributed
from cconv_dask._cluster import _available_cpus
from _machine import describe, results_dir  # bench/ is the script's own folder

RESULTS = results_dir()   # bench/results/local unless CCONV_BENCH_SAVE=1
BATCH, CHUNK = 128, 512


def lenet():
    return Sequential(Conv2d(1, 6, 5), ReLU(), MaxPool2d(2), Conv2d(6, 16, 5), ReLU(),
                      MaxPool2d(2), Flatten(), Linear(256, 120), ReLU(), Linear(120, 84),
                      ReLU(), Linear(84, 10)).build((1, 28, 28), seed=0)


def empty_model():
    return Sequential(Flatten()).build((1, 1, 1), seed=0)


def start(n_workers):
    cluster = distributed.LocalCluster(
        n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, silence_logs=logging.ERROR)
    return cluster, distributed.Client(cluster, set_as_default=False)


def timed(fn):
    """(total seconds, seconds of it spent in the predict call itself or None)."""
    t0 = time.perf_counter()
    setup = fn()
    return time.perf_counter() - t0, setup


def machine(load_at_start):
    return describe(cpus=_available_cpus(), dask=distributed.__version__,
                    load_average_at_start=load_at_start,
                    note="2 shared cores: other jobs run beside this one; medians of rounds")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="1024 images, 3 rounds")
    ap.add_argument("--out", default=str(RESULTS / "dask.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.images, args.rounds = 1024, 3
    load_at_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    cpus = _available_cpus()
    net = lenet()
    x = np.random.default_rng(0).random((args.images, 1, 28, 28), dtype=np.float32)
    n_chunks = -(-args.images // CHUNK)
    tiny_chunks = 200
    tiny = np.zeros((tiny_chunks, 1, 1, 1), np.float32)

    clusters = {n: start(n) for n in (1, 2)}
    try:
        inputs = {n: c.persist(da.from_array(x, chunks=(CHUNK, 1, 28, 28)))
                  for n, (_, c) in clusters.items()}
        tiny_inputs = {n: c.persist(da.from_array(tiny, chunks=(1, 1, 1, 1)))
                       for n, (_, c) in clusters.items()}
        for n, (_, c) in clusters.items():
            with c.as_current():  # wait() asks for the current client
                distributed.wait(distributed.futures_of([inputs[n], tiny_inputs[n]]))

        def single(threads):
            def run():
                with cconv.threads(threads):
                    cconv.predict(net, x, batch_size=BATCH)
            return run

        def on_dask(n, model, data, batch):
            client = clusters[n][1]

            def run():
                t0 = time.perf_counter()
                out = cconv_dask.predict(model, data, batch_size=batch, client=client)
                setup = time.perf_counter() - t0
                client.compute(out).result()
                return setup
            return run

        def dask_alone(n):   # the same 1-image chunks through a plain map_blocks
            client = clusters[n][1]

            def run():
                client.compute(tiny_inputs[n].map_blocks(np.negative)).result()
            return run

        cases = {"single_1thread": single(1), f"single_{cpus}threads": single(cpus)}
        for n in (1, 2):
            cases[f"dask_{n}worker"] = on_dask(n, net, inputs[n], BATCH)
            cases[f"dask_{n}worker_empty_chunks"] = on_dask(n, empty_model(), tiny_inputs[n], 1)
            cases[f"dask_{n}worker_plain_map_blocks"] = dask_alone(n)
        for fn in cases.values():  # warm: imports and first model load on the workers
            fn()
        samples = {name: [] for name in cases}
        setups = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, fn in cases.items():
                time.sleep(0.05)
                total, setup = timed(fn)
                samples[name].append(total)
                if setup is not None:
                    setups[name].append(setup)
    finally:
        for cluster, client in clusters.values():
            client.close()
            cluster.close()

    med = {name: statistics.median(s) for name, s in samples.items()}
    best_single = min(med["single_1thread"], med[f"single_{cpus}threads"])
    rows = []
    for name, seconds in med.items():
        empty = name.endswith(("empty_chunks", "plain_map_blocks"))
        images = tiny_chunks if empty else args.images
        row = {"case": name, "median_s": round(seconds, 4),
               "samples_s": [round(s, 4) for s in samples[name]]}
        if setups[name]:
            # predict() itself: serialize the model, ask the workers' CPUs, scatter
            row["predict_call_s"] = round(statistics.median(setups[name]), 4)
        if empty:
            row["chunks"] = tiny_chunks
            row["overhead_per_chunk_ms"] = round(1e3 * seconds / tiny_chunks, 3)
            if "predict_call_s" in row:
                row["overhead_per_chunk_ms_without_predict_call"] = round(
                    1e3 * (seconds - row["predict_call_s"]) / tiny_chunks, 3)
        else:
            row["images_per_s"] = round(images / seconds, 1)
            row["vs_best_single"] = round(best_single / seconds, 3)
            if name.startswith("dask"):
                row["chunks"] = n_chunks
                row["extra_ms_per_chunk_vs_best_single"] = round(
                    1e3 * (seconds - best_single) / n_chunks, 2)
        rows.append(row)
        print(json.dumps(row))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"machine": machine(load_at_start), "images": args.images, "batch_size": BATCH,
              "chunk": CHUNK, "rounds": args.rounds, "results": rows}
    tmp = out.with_suffix(".json.tmp")   # written whole, then renamed
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
