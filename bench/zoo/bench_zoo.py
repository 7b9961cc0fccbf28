"""Model zoo: standard architectures, exported from torch to ONNX, in cconv vs onnxruntime vs torch.

Each net (models.py) gets seeded weights, is exported with torch.onnx.export
(dynamo=False) at opset 17 with free batch and H/W axes (export.py; cached in
bench/zoo/.cache, untracked), imported with cconv_onnx (from
plugins/cconv-onnx/src, not installed; where cconv refuses the free H/W the
file is imported again at the benchmarked size and the row's status says so) and
timed against onnxruntime on the same file (intra_op_num_threads set, spinning
off: its spinning pool otherwise steals the cores from the interleaved cconv
runs) and torch eager on the same weights: batch 1 and 8, 1 and 2 threads,
interleaved rounds, medians. cconv's output is checked against onnxruntime's
(max abs difference / max abs of onnxruntime's output; float32 target 1e-4).
Also: training steps of the CIFAR forms (32x32, batch 64) against torch, peak
inference memory of cconv and onnxruntime (each in its own process), and an
import + accuracy check of opset-13 files (full mode). A net that fails anywhere is a
row with the first line of the error in `status`; a missing anchor is a row
note with its install line.

    python bench/zoo/bench_zoo.py --quick          # batch 1, small inputs, 3 rounds, no memory
                                                   # runs or opset-13 checks (~5 min on 2 cores)
    python bench/zoo/bench_zoo.py                  # the full zoo (an hour on 2 cores)
    python bench/zoo/bench_zoo.py --only resnet18,unet --no-memory
    python bench/zoo/bench_zoo.py --table FILE.json   # the README table of a result file
"""
import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
# the bench's helpers, the zoo's modules, and the ONNX plugin from the checkout (not installed)
sys.path[:0] = [str(HERE), str(HERE.parent), str(REPO / "plugins" / "cconv-onnx" / "src")]

import numpy as np  # noqa: E402

import cconv  # noqa: E402
import export  # noqa: E402
from _machine import describe, results_dir  # noqa: E402
from shapes import SHAPES, TRAIN_SHAPES  # noqa: E402
from timing import interleaved  # noqa: E402
from training import bench_train  # noqa: E402

try:
    import torch

    from models import build
except ImportError:   # the ONNX files already in .cache still run
    torch = build = None
try:
    import onnxruntime as ort
except ImportError:
    ort = None

INSTALL = {"torch": "not installed: pip install torch==2.13.0 (CPU build; never a plain "
                    "`pip install torch`)",
           "onnxruntime": "not installed: pip install onnxruntime"}
TARGET_REL_DIFF = 1e-4


def first_line(e):
    text = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {text[:200]}"


def ort_session(path, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def first_output(out):
    """The first output array of a net's result (array, tuple/list or dict)."""
    if isinstance(out, dict):
        out = next(iter(out.values()))
    if isinstance(out, (list, tuple)):
        out = out[0]
    return np.asarray(out)


def rel_diff(out, ref):
    """max |out - ref| over max |ref|: the error relative to the output's scale."""
    out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
    if out.shape != ref.shape:
        return float("inf")
    return float(np.max(np.abs(out - ref)) / max(float(np.max(np.abs(ref))), 1e-30))


def onnx_file(name, shape, opset, model):
    """(path, None) or (None, status) when the file cannot be had."""
    try:
        path = export.cache_path(name, shape, opset)
        if path.exists():
            return path, None
        if torch is None:
            return None, f"export needs torch, {INSTALL['torch']}"
        return export.export(name, shape, opset, model), None
    except Exception as e:  # noqa: BLE001 - any failure is a visible row
        return None, f"export failed: {first_line(e)}"


def import_cconv(path, shape=None):
    """(net, seconds, None) or (None, None, status); or (net, seconds, note).

    The file as exported (free batch and H/W); where cconv refuses the free
    sizes and `shape` is given, again with input_shapes fixing them, the
    refusal kept as a note in the row's status.
    """
    import cconv_onnx

    t0 = time.perf_counter()
    try:
        return cconv_onnx.import_onnx(str(path)), time.perf_counter() - t0, None
    except Exception as e:  # noqa: BLE001
        status = f"cconv import failed: {first_line(e)}"
    if shape is None:
        return None, None, status
    t0 = time.perf_counter()
    try:
        net = cconv_onnx.import_onnx(str(path), input_shapes={"input": tuple(shape)})
    except Exception:  # noqa: BLE001 - the first failure is the one to report
        return None, None, status
    refused = status.replace("cconv import failed: ", "")[:160]
    return net, time.perf_counter() - t0, f"ok with input_shapes fixed; free H/W refused: {refused}"


# ---------------------------------------------------------------- inference

def bench_infer(name, shape, path, net, status, model, batch, threads, rounds):
    """One row: each engine's median ms, cconv's error against onnxruntime, status."""
    x = np.random.default_rng(batch).standard_normal((batch, *shape)).astype(np.float32)
    row = {"case": f"zoo_infer/{name}/b{batch}", "threads": threads, "input": list(shape),
           "status": status or "ok"}
    if path is not None:
        row["onnx_free_axes"] = export.free_axes(path)
    fns, ref, out = {}, None, None
    if net is not None:
        try:
            with cconv.threads(threads):
                out = first_output(net(x))
            fns["cconv"] = lambda: net(x)
        except Exception as e:  # noqa: BLE001
            row["status"] = f"cconv run failed: {first_line(e)}"
            out = None
    if ort is None:
        row["onnxruntime"] = INSTALL["onnxruntime"]
    elif path is not None:
        sess = ort_session(path, threads)
        feed = {"input": x}
        ref = sess.run(None, feed)[0]
        fns["onnxruntime"] = lambda: sess.run(None, feed)
    if torch is None:
        row["torch"] = INSTALL["torch"]
    elif model is not None:
        torch.set_num_threads(threads)
        xt = torch.from_numpy(x)

        def torch_infer():
            with torch.inference_mode():
                return model(xt)
        if ref is not None:
            row["torch_rel_diff"] = rel_diff(torch_infer().numpy(), ref)
        fns["torch"] = torch_infer
    if out is not None and ref is not None:
        row["max_rel_err"] = rel_diff(out, ref)
        row["accuracy_ok"] = row["max_rel_err"] <= TARGET_REL_DIFF
    with cconv.threads(threads):
        for engine, t in interleaved(fns, rounds).items():
            row[f"{engine}_ms"] = t * 1e3
    return row


def bench_opset13(name, shape, model):
    """Import and accuracy of the opset-13 file, batch 1 (no timings)."""
    row = {"case": f"zoo_opset13/{name}/b1", "threads": 2, "input": list(shape), "status": "ok"}
    path, status = onnx_file(name, shape, 13, model)
    net, seconds, status = (None, None, status) if path is None else import_cconv(path, shape)
    if net is None:
        row["status"] = status
        return row
    row["import_s"], row["status"] = seconds, status or "ok"
    x = np.random.default_rng(1).standard_normal((1, *shape)).astype(np.float32)
    try:
        with cconv.threads(2):
            out = first_output(net(x))
    except Exception as e:  # noqa: BLE001
        row["status"] = f"cconv run failed: {first_line(e)}"
        return row
    if ort is not None:
        row["max_rel_err"] = rel_diff(out, ort_session(path, 2).run(None, {"input": x})[0])
        row["accuracy_ok"] = row["max_rel_err"] <= TARGET_REL_DIFF
    return row


# ---------------------------------------------------------------- memory

def bench_memory(name, shape, path, status, batch=1, threads=1):
    """Peak MB of cconv and onnxruntime (load + 3 inferences), each in a fresh process."""
    imported = status is None or status.startswith("ok")
    return _bench_memory(name, shape, path, None if imported else status, batch, threads)


def _bench_memory(name, shape, path, status, batch=1, threads=1):
    """Peak MB of cconv and onnxruntime (load + 3 inferences), each in a fresh process."""
    row = {"case": f"zoo_peak_memory/{name}/b{batch}", "threads": threads, "unit": "MB",
           "input": list(shape), "status": status or "ok"}
    run_row = dict(row, case=f"zoo_run_memory/{name}/b{batch}")
    engines = ["cconv"] if status is None else []
    engines += ["onnxruntime"] if ort is not None else []
    for engine in engines:
        cmd = [sys.executable, str(HERE / "memory.py"), engine, str(path), str(batch),
               ",".join(map(str, shape)), str(threads)]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if r.returncode != 0:
                raise RuntimeError((r.stderr.strip().splitlines() or ["?"])[-1])
            m = json.loads(r.stdout.strip().splitlines()[-1])
        except Exception as e:  # noqa: BLE001
            row["status"] = run_row["status"] = f"{engine} memory run failed: {first_line(e)}"
            continue
        row[f"{engine}_ms"], row[f"{engine}_loaded_MB"] = m["peak_mb"], m["loaded_mb"]
        if m["run_mb"] is not None:
            run_row[f"{engine}_ms"] = m["run_mb"]
    if ort is None:
        row["onnxruntime"] = INSTALL["onnxruntime"]
    return [row, run_row]


# ---------------------------------------------------------------- summary rows

def geomean_rows(rows):
    """Per batch and threads: geometric means over the nets every engine ran.

    geomean(anchor ms) / geomean(cconv ms) is the geometric mean of the ratios,
    so run.py's summary reads it like any other row.
    """
    out = []
    keys = sorted({(r["case"].rsplit("/", 1)[1], r["threads"]) for r in rows
                   if r["case"].startswith("zoo_infer/")})
    for b, t in keys:
        sel = [r for r in rows if r["case"].startswith("zoo_infer/") and r["case"].endswith("/" + b)
               and r["threads"] == t and all(f"{e}_ms" in r for e in ("cconv", "onnxruntime"))]
        if not sel:
            continue
        g = {e: math.exp(sum(math.log(r[f"{e}_ms"]) for r in sel) / len(sel))
             for e in ("cconv", "onnxruntime")}
        row = {"case": f"zoo_infer_geomean/{b}", "threads": t, "nets": len(sel),
               **{f"{e}_ms": v for e, v in g.items()}}
        if all("torch_ms" in r for r in sel):
            row["torch_ms"] = math.exp(sum(math.log(r["torch_ms"]) for r in sel) / len(sel))
        out.append(row)
    return out


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def table(rows):
    """Markdown: one line per row, ratios anchor/cconv (> 1: cconv faster)."""
    lines = ["| case | input | threads | cconv ms | onnxruntime ms | torch ms | vs ort | vs torch "
             "| max rel err | status |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["case"].startswith(("zoo_peak_memory", "zoo_run_memory", "zoo_opset13")):
            continue
        c, o, t = r.get("cconv_ms"), r.get("onnxruntime_ms"), r.get("torch_ms")
        vo = o / c if c and o else None
        vt = t / c if c and t else None
        status = r.get("status", "ok" if "nets" not in r else f"{r['nets']} nets")
        lines.append(f"| {r['case']} | {'x'.join(map(str, r.get('input', [])))} | {r['threads']} "
                     f"| {fmt(c, '.2f')} | {fmt(o, '.2f')} | {fmt(t, '.2f')} "
                     f"| {fmt(vo, '.2f')}{'x' if vo else ''} | {fmt(vt, '.2f')}{'x' if vt else ''} "
                     f"| {fmt(r.get('max_rel_err'), '.1e')} | {status} |")
    mem = [r for r in rows if r["case"].startswith(("zoo_peak_memory", "zoo_run_memory"))]
    if mem:
        lines += ["", "| memory (MB) | threads | cconv | onnxruntime | cconv / ort | status |",
                  "|---|---|---|---|---|---|"]
        for r in mem:
            c, o = r.get("cconv_ms"), r.get("onnxruntime_ms")
            lines.append(f"| {r['case']} | {r['threads']} | {fmt(c, '.1f')} | {fmt(o, '.1f')} "
                         f"| {fmt(c / o if c and o else None, '.2f')} | {r.get('status', 'ok')} |")
    o13 = [r for r in rows if r["case"].startswith("zoo_opset13")]
    if o13:
        lines += ["", "| opset 13 file | import s | max rel err | status |", "|---|---|---|---|"]
        lines += [f"| {r['case']} | {fmt(r.get('import_s'), '.2f')} "
                  f"| {fmt(r.get('max_rel_err'), '.1e')} | {r['status']} |" for r in o13]
    return "\n".join(lines)


def print_row(r):
    c, o, t = (r.get(f"{e}_ms") for e in ("cconv", "onnxruntime", "torch"))
    ratios = "  ".join(f"vs {e} {a / c:.2f}x" for e, a in (("ort", o), ("torch", t)) if a and c)
    diff = f"  diff {r['max_rel_err']:.1e}" if "max_rel_err" in r else ""
    print(f"{r['case']:36s} {r['threads']}t  cconv {fmt(c, '9.2f')}  ort {fmt(o, '9.2f')}  "
          f"torch {fmt(t, '9.2f')}  {ratios}{diff}  [{r.get('status', 'ok')}]", flush=True)


# ---------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--quick", action="store_true",
                    help="batch 1, smaller inputs where the net allows, 3 rounds")
    ap.add_argument("--batches", default=None, help="default 1,8 (quick: 1)")
    ap.add_argument("--rounds", type=int, default=None, help="default 5 (quick: 3)")
    ap.add_argument("--only", default="", help=f"comma-separated nets of {', '.join(SHAPES)}")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--out", default=None, help="default zoo.json (quick: zoo-quick.json) in "
                    "bench/results/local, or bench/results with CCONV_BENCH_SAVE=1")
    ap.add_argument("--table", default=None, help="print the markdown table of a result file")
    args = ap.parse_args(argv)
    if args.table:
        print(table(json.loads(Path(args.table).read_text())["results"]))
        return
    args.out = args.out or str(results_dir() / ("zoo-quick.json" if args.quick else "zoo.json"))
    threads = [int(t) for t in args.threads.split(",")]
    batches = [int(b) for b in (args.batches or ("1" if args.quick else "1,8")).split(",")]
    rounds = args.rounds or (3 if args.quick else 5)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SHAPES)
    unknown = set(names) - set(SHAPES) - set(TRAIN_SHAPES)
    if unknown:
        ap.error(f"unknown nets {sorted(unknown)}; known: {list(SHAPES)}, {list(TRAIN_SHAPES)}")
    t_start = time.perf_counter()
    rows = []
    for name in [n for n in names if n in SHAPES]:
        shape = SHAPES[name][1 if args.quick else 0]
        model = build(name, shape) if torch is not None else None
        path, status = onnx_file(name, shape, 17, model)
        net, seconds = None, None
        if path is not None:
            net, seconds, status = import_cconv(path, shape)
        for batch in batches:
            for t in threads:
                rows.append(bench_infer(name, shape, path, net, status, model, batch, t, rounds))
                rows[-1]["import_s"] = seconds   # cconv_onnx.import_onnx of the file, once
                print_row(rows[-1])
        del net   # before the next net: its plan's buffers would add to the memory runs
        if not args.quick:   # quick: the timed opset-17 files only
            rows.append(bench_opset13(name, shape, model))
            print_row(rows[-1])
        if not (args.no_memory or args.quick) and path is not None:
            for r in bench_memory(name, shape, path, status):
                rows.append(r)
                print_row(r)
    rows += geomean_rows(rows)
    if not args.no_train:
        train_names = [n for n in TRAIN_SHAPES if not args.only or n in names
                       or n.replace("_cifar", "") in names]
        for name in train_names:
            shape = TRAIN_SHAPES[name]
            model = build(name, shape) if torch is not None else None
            path, status = onnx_file(name, shape, 17, model)
            for t in threads:
                if path is None:
                    rows.append({"case": f"zoo_train_step/{name}/b64", "threads": t,
                                 "status": status})
                else:
                    rows.append(bench_train(
                        name, shape, t, max(2, rounds - 2), lambda p=path, s=shape: import_cconv_or_raise(p, s),
                        (lambda n=name, s=shape: build(n, s)) if torch is not None else None))
                print_row(rows[-1])
    info = describe(torch=torch.__version__ if torch else INSTALL["torch"],
                    onnxruntime=ort.__version__ if ort else INSTALL["onnxruntime"],
                    onnx=_version("onnx"), mode="quick" if args.quick else "full",
                    batches=batches, threads=threads, rounds=rounds,
                    exporter="torch.onnx.export(dynamo=False), opset 17 (timed; free batch and H/W axes)"
                    + ("" if args.quick else ", opset 13 (import and accuracy check)"),
                    seconds=round(time.perf_counter() - t_start, 1))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": info, "results": rows}, indent=1) + "\n")
    print(table(rows))
    print(f"wrote {out} in {info['seconds']} s", file=sys.stderr)


def import_cconv_or_raise(path, shape=None):
    net, _, status = import_cconv(path, shape)
    if net is None:
        raise RuntimeError(status)
    return net


def _version(dist):
    import importlib.metadata
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
