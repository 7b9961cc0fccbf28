"""LeNet-5 end to end: cconv against torch eager and onnxruntime (when installed).

Cases, each at 1 and 2 threads: inference at batch 1 and 64, and one training
step at batch 64 (forward + cross-entropy + backward + SGD update). All
engines run the same weights, warm; samples alternate between engines in
rounds (so load from other processes hits all alike), with a short pause
before each so that one engine's spinning threads do not slow the next; the
figure is the median sample. Ratios are anchor time / cconv time
(> 1: cconv is faster) from the same run.

    python bench/bench_lenet.py            # JSON in bench/results/lenet.json
    python bench/bench_lenet.py --quick
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import cconv
from cconv.graph import Sequential
from cconv.nn import Conv2d, Flatten, Linear, MaxPool2d, ReLU, softmax_cross_entropy
from cconv.optim import SGD
from _machine import describe, results_dir  # bench/ is the script's own folder

try:
    import torch
except ImportError:
    torch = None
try:
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
except ImportError:
    ort = None

RESULTS = results_dir()   # bench/results/local unless CCONV_BENCH_SAVE=1
PAUSE = 0.02  # seconds before each sample, at least: lets idle thread pools stop spinning
QUIET_STEP = 0.005  # then wait in steps this long until the process uses no CPU ...
QUIET_MAX = 0.3     # ... for at most this long


def lenet():
    return Sequential(Conv2d(1, 6, 5), ReLU(), MaxPool2d(2), Conv2d(6, 16, 5), ReLU(),
                      MaxPool2d(2), Flatten(), Linear(256, 120), ReLU(), Linear(120, 84),
                      ReLU(), Linear(84, 10)).build((1, 28, 28), seed=0)


def _calibrate(fn, min_time):
    """Loops per sample so that a sample lasts about min_time (after warming up).

    From the median of 7 timed calls: one call alone may be an outlier (this
    machine's other tenants, a thread waking up), and a calibration 5x too
    slow left a sample 5x too few calls, each sample's first call (its
    threads woken after the pause) then weighing 5x more in it.
    """
    for _ in range(3):
        fn()
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return max(1, int(min_time / max(statistics.median(times), 1e-7)))


def wait_until_quiet():
    """Sleep until no thread of this process burns CPU (at least PAUSE).

    After its last run onnxruntime's pool keeps spinning for 40-60 ms on this
    machine (bench_lenet_isolated.py measures it): a fixed 20 ms pause let it
    spin through the next engine's sample, on the cores that engine's threads
    need. Returns the seconds waited.
    """
    time.sleep(PAUSE)
    waited = PAUSE
    while waited < QUIET_MAX:
        c0 = time.process_time()    # CPU time of every thread of the process
        time.sleep(QUIET_STEP)
        waited += QUIET_STEP
        if time.process_time() - c0 < 0.05 * QUIET_STEP:
            break
    return waited


def compare(fns, repeats, min_time=0.03):
    """Median seconds per call of each engine, sampled in interleaved rounds.

    Round-robin sampling means a burst of load from other processes hits every
    engine alike, so the ratios stay fair on a shared machine. A short pause
    before each engine's sample, until the process is idle, lets the previous
    engine's idle threads stop spinning.
    """
    loops = {name: _calibrate(fn, min_time) for name, fn in fns.items()}
    return sample_rounds(fns, loops, repeats)


def sample_rounds(fns, loops, repeats):
    """{name: median seconds per call}: `repeats` rounds of one sample per function
    (loops[name] calls each), round-robin, each after wait_until_quiet()."""
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            wait_until_quiet()
            t0 = time.perf_counter()
            for _ in range(loops[name]):
                fn()
            samples[name].append((time.perf_counter() - t0) / loops[name])
    return {name: statistics.median(v) for name, v in samples.items()}




# ---------------------------------------------------------------- anchors

def torch_lenet(net):
    t = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(6, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(256, 120), torch.nn.ReLU(), torch.nn.Linear(120, 84), torch.nn.ReLU(),
        torch.nn.Linear(84, 10))
    with torch.no_grad():
        for p, (_, a) in zip(t.parameters(), net.named_parameters(), strict=True):
            p.copy_(torch.from_numpy(a))
    return t


def onnx_lenet(net):
    """The same LeNet as an ONNX graph built with onnx.helper (no exporter needed)."""
    p = dict(net.named_parameters())
    inits = [numpy_helper.from_array(a, name) for name, a in p.items()]
    nodes = [
        helper.make_node("Conv", ["x", "0_conv2d.weight", "0_conv2d.bias"], ["c1"]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "3_conv2d.weight", "3_conv2d.bias"], ["c2"]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p2"], ["f"]),
        helper.make_node("Gemm", ["f", "7_linear.weight", "7_linear.bias"], ["l1"], transB=1),
        helper.make_node("Relu", ["l1"], ["r3"]),
        helper.make_node("Gemm", ["r3", "9_linear.weight", "9_linear.bias"], ["l2"], transB=1),
        helper.make_node("Relu", ["l2"], ["r4"]),
        helper.make_node("Gemm", ["r4", "11_linear.weight", "11_linear.bias"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "lenet", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def ort_session(model_bytes, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------- cases

def bench_inference(net, tnet, onnx_bytes, batch, threads, repeats):
    rng = np.random.default_rng(batch)
    x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
    row = {"case": f"lenet_infer/b{batch}", "threads": threads}
    with cconv.threads(threads):
        ref = net(x)
    fns = {"cconv": lambda: net(x)}
    if torch is not None:
        torch.set_num_threads(threads)
        xt = torch.from_numpy(x)

        def torch_infer():
            with torch.inference_mode():
                return tnet(xt)
        np.testing.assert_allclose(torch_infer().numpy(), ref, rtol=1e-4, atol=1e-4)
        fns["torch"] = torch_infer
    if ort is not None:
        sess = ort_session(onnx_bytes, threads)
        feed = {"x": x}
        np.testing.assert_allclose(sess.run(None, feed)[0], ref, rtol=1e-4, atol=1e-4)
        fns["onnxruntime"] = lambda: sess.run(None, feed)
    # Thread counts are set once for the whole comparison, as torch's and the
    # ORT session's are: a `with cconv.threads()` per call would add ~4 us.
    with cconv.threads(threads):
        timings = compare(fns, repeats)
    for name, t in timings.items():
        row[f"{name}_ms"] = t * 1e3
    return row


def bench_train_step(threads, repeats, batch=64):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    net = lenet()
    opt = SGD(net, lr=1e-3, momentum=0.9)
    row = {"case": f"lenet_train_step/b{batch}", "threads": threads}

    def ours():
        _, grad = softmax_cross_entropy(net.forward(x, training=True), y)
        net.backward(grad, input_grads=False)   # as fit() does; torch's input needs no grad either
        opt.step()

    fns = {"cconv": ours}
    if torch is not None:
        torch.set_num_threads(threads)
        tnet = torch_lenet(lenet())
        topt = torch.optim.SGD(tnet.parameters(), lr=1e-3, momentum=0.9)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)

        def theirs():
            topt.zero_grad()
            torch.nn.functional.cross_entropy(tnet(xt), yt).backward()
            topt.step()
        fns["torch"] = theirs
    # Thread counts are set once for the whole comparison, as torch's and the
    # ORT session's are: a `with cconv.threads()` per call would add ~4 us.
    with cconv.threads(threads):
        timings = compare(fns, repeats)
    for name, t in timings.items():
        row[f"{name}_ms"] = t * 1e3
    return row


def machine():
    return describe(torch=torch.__version__ if torch else None,
                    onnxruntime=ort.__version__ if ort else None)


def ratios(row):
    for anchor in ("torch", "onnxruntime"):
        if f"{anchor}_ms" in row:
            row[f"vs_{anchor}"] = row[f"{anchor}_ms"] / row["cconv_ms"]
    return row


def print_row(r):
    def fmt(key):
        return f"{r[key]:9.3f}" if key in r else "        -"
    vs = "  ".join(f"{k}={r[k]:.2f}x" for k in ("vs_torch", "vs_onnxruntime") if k in r)
    print(f"{r['case']:24s} {r['threads']:2d}t  cconv {fmt('cconv_ms')} ms  torch "
          f"{fmt('torch_ms')}  ort {fmt('onnxruntime_ms')}  {vs}", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(RESULTS / "lenet.json"))
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="cap numpy's BLAS pool (threadpoolctl): Linear layers that call "
                         "numpy's matmul otherwise fight the kernels' OpenMP pool on 2 cores")
    args = ap.parse_args(argv)
    if args.blas_threads:
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.blas_threads, user_api="blas")
    repeats = 5 if args.quick else 15
    net = lenet()
    tnet = torch_lenet(net) if torch is not None else None
    onnx_bytes = onnx_lenet(net) if ort is not None else None
    rows = []
    for threads in [int(t) for t in args.threads.split(",")]:
        for batch in (1, 64):
            rows.append(ratios(bench_inference(net, tnet, onnx_bytes, batch, threads, repeats)))
            print_row(rows[-1])
        rows.append(ratios(bench_train_step(threads, repeats)))
        print_row(rows[-1])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    info = dict(machine(), blas_threads=args.blas_threads)
    out.write_text(json.dumps({"machine": info, "results": rows}, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
