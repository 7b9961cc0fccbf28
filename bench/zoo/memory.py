"""Peak inference memory of one engine on one ONNX file, in a fresh process.

    python bench/zoo/memory.py cconv|onnxruntime MODEL.onnx BATCH C,H,W THREADS

Prints JSON: `peak_mb`, the high-water mark of resident memory (VmHWM) during
loading and three inferences, minus the mark after the engine's modules and the
input are in memory; and `run_mb`, the same over the inferences alone (the mark
reset after loading through /proc/self/clear_refs, where the kernel allows it).
"""
import gc
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "plugins", "cconv-onnx", "src"))


def status_kb(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))


def reset_peak():
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def main(engine, path, batch, shape, threads):
    import numpy as np

    x = np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)
    if engine == "cconv":
        import cconv
        import cconv_onnx
        import onnx  # noqa: F401  (the importer's own dependency: part of the baseline)
        cconv.set_num_threads(threads)
    else:
        import onnxruntime as ort
    gc.collect()
    reset_peak()   # imports may have peaked above what stays resident
    base = status_kb("VmHWM")
    if engine == "cconv":
        try:
            net = cconv_onnx.import_onnx(path)
        except Exception:  # noqa: BLE001 - free H/W refused: fixed as bench_zoo.py does
            net = cconv_onnx.import_onnx(path, input_shapes={"input": shape})
        run = lambda: net(x)  # noqa: E731
    else:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        run = lambda: sess.run(None, {"input": x})  # noqa: E731
    gc.collect()
    load_peak, loaded = status_kb("VmHWM"), status_kb("VmRSS")
    can_reset = reset_peak()
    for _ in range(3):
        run()
    peak = max(status_kb("VmHWM"), load_peak)
    out = {"peak_mb": (peak - base) * 1024 / 1e6,
           "loaded_mb": (loaded - base) * 1024 / 1e6,
           "run_mb": (status_kb("VmHWM") - loaded) * 1024 / 1e6 if can_reset else None}
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]),
         tuple(int(v) for v in sys.argv[4].split(",")), int(sys.argv[5]))
