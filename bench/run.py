"""Run the whole benchmark suite; write a summary with the ratios against the anchors.

Each bench/bench_*.py runs as its own process (fresh allocator and thread
pools, one crash or timeout loses one bench), with the same thread counts,
writing its JSON to <out-dir>/suite/<bench>.json; this script adds the footprint
(import time, package/wheel size, peak memory of LeNet training on digits
against torch's), then collects every result row that has `cconv_ms` and
an anchor's `<anchor>_ms`, and writes

    summary.json   machine description, every row, ratio = anchor / cconv (> 1: cconv faster)
    summary.md     the same as a markdown table, with the issue's targets
    summary.png    ratios as bars against the targets (if matplotlib is installed)

    python bench/run.py --quick                      # a few minutes
    python bench/run.py --threads 1,2,4,8,16         # the full suite, more thread counts
    python bench/run.py --only lenet,overhead        # some benches (and the footprint)
    python bench/run.py --save                       # update the committed bench/results

Without --save everything goes to bench/results/local/ (untracked). An anchor
that is not installed is a visible row of the summary, not a silent gap.
"""
import argparse
import importlib.metadata
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PACKAGE = REPO / "src" / "cconv"

# name -> (script, arguments builder(threads list, quick, out path)); run in this order.
def _common(threads, quick, out):
    return ["--threads", ",".join(map(str, threads)), "--out", str(out)] + \
        (["--quick"] if quick else [])


BENCHES = {
    "overhead": ("bench_overhead.py", _common),
    "lenet": ("bench_lenet.py", _common),
    "ops": ("bench_ops.py", _common),
    # quick: only the cases the issue sets a target for, to stay within minutes
    "filters": ("bench_filters.py", lambda t, q, out: _common(t, q, out)
                + (["--filter", "3x3"] if q else [])),
    "eigh": ("bench_eigh.py", lambda t, q, out: ["--threads", *map(str, t), "--out", str(out)]
             + (["--quick", "--sizes", "500"] if q else [])),
    # the reliability helper's (3x32x32 LeNet, batch 64; writes results/memory.json)
    "memory": ("bench_memory.py", _common),
    # real architectures exported from torch (issue 24); its own folder: models, cache, memory runs
    "zoo": ("zoo/bench_zoo.py", _common),
}
# --quick leaves these out (the footprint's own digits measurement stays)
QUICK_SKIPS = {"memory"}
# per-bench time limits in seconds (quick, full); a bench past it is reported as timed out
LIMITS = {"ops": (150, 1800), "eigh": (120, 1800), "filters": (90, 1200),
          "zoo": (900, 7200)}   # quick: the first run also exports the zoo to ONNX (2 min)
DEFAULT_LIMIT = (90, 900)

# The targets: (case regex, anchor, minimum ratio anchor/cconv).
TARGETS = [
    (r"^conv2d_fwd/(?!depthwise)", "torch", 1.0),
    (r"^conv2d_fwd/depthwise", "torch", 2.0),
    (r"^max_?pool2d.*fwd|^maxpool.*fwd|^max_pool2d_fwd", "torch", 10.0),
    (r"^conv2d_bwd", "torch", 1.0),
    (r"^lenet_infer/b1$", "onnxruntime", 1.5),
    (r"^lenet_infer/b1$", "torch", 10.0),
    (r"^lenet_infer/b64$", "onnxruntime", 1.0),
    (r"^lenet_train_step/b64$", "torch", 1.5),
    (r"^3x3_dense", "cv2", 1.2),
    (r"^import_time", "limit", 1.0),
    (r"^wheel_size", "limit", 1.0),
    (r"^peak_memory/lenet_digits_train$", "torch", 1.0),
    (r"^peak_rss/lenet_digits_train$", "torch", 1.0),
    (r"^memory_(work|peak_rss)/lenet_train", "torch", 1.0),
    # issue 24: every zoo net at >= 1x onnxruntime and >= 2x torch, geometric mean >= 1.2x;
    # training steps >= 1.5x torch; peak inference memory <= onnxruntime's (geomean first:
    # the first matching pattern wins)
    (r"^zoo_infer_geomean/", "onnxruntime", 1.2),
    (r"^zoo_infer", "onnxruntime", 1.0),
    (r"^zoo_infer", "torch", 2.0),
    (r"^zoo_train_step/", "torch", 1.5),
    (r"^zoo_peak_memory/", "onnxruntime", 1.0),
]


# ---------------------------------------------------------------- machine

def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine(threads):
    info = {"cpu": platform.processor() or platform.machine(), "flags": [],
            "cpu_count": os.cpu_count(), "cpus_available": len(os.sched_getaffinity(0)),
            "threads_benchmarked": threads, "platform": platform.platform(),
            "python": platform.python_version(),
            "versions": {d: _version(d) for d in ("cconv", "numpy", "scipy", "torch",
                                                  "onnxruntime", "opencv-python",
                                                  "opencv-python-headless", "matplotlib")},
            "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
                                                   "OPENBLAS_NUM_THREADS", "CCONV_AUTOTUNE")},
            "load_average_before": os.getloadavg(),
            "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and info["flags"] == []:
                    info["cpu"] = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    info["flags"] = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16")
                                     if f in flags]
                    break
    except OSError:
        pass
    try:
        info["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                            capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    try:
        probe = subprocess.run([sys.executable, "-c", "import cconv, cv2; print(cconv.__version__,"
                                " cconv.openmp_enabled(), cv2.__version__)"],
                               capture_output=True, text=True, timeout=60)
        parts = probe.stdout.split()
        if len(parts) == 3:
            info["versions"]["cconv"], info["openmp"], info["versions"]["cv2"] = \
                parts[0], parts[1] == "True", parts[2]
    except (OSError, subprocess.TimeoutExpired):
        pass
    return info


# ---------------------------------------------------------------- anchors

# anchor -> (import name, distributions, how to install it)
ANCHORS = {
    "torch": ("torch", ("torch",),
              "pip install torch==2.13.0 (a CPU build; a plain `pip install torch` pulls CUDA)"),
    "onnxruntime": ("onnxruntime", ("onnxruntime",), "pip install onnxruntime"),
    "cv2": ("cv2", ("opencv-python-headless", "opencv-python"),
            "pip install opencv-python-headless"),
}


def anchor_status():
    """{anchor: version, or "not installed: <install line>"} for every anchor."""
    import importlib.util

    status = {}
    for anchor, (module, dists, install) in ANCHORS.items():
        version = next((v for v in map(_version, dists) if v), None)
        if version is None and importlib.util.find_spec(module) is None:
            status[anchor] = f"not installed: {install}"
        else:
            status[anchor] = version or "installed"
    return status


# ---------------------------------------------------------------- footprint

IMPORTS = {
    # `import cconv` alone loads submodules lazily; "cconv_ready" is what a
    # user pays before the first net runs (numpy, the kernels, nn, graph)
    "cconv": "import cconv",
    "cconv_ready": "import cconv; cconv.Sequential; cconv.nn.Conv2d; cconv.ops.conv2d",
    "numpy": "import numpy",
    "onnxruntime": "import onnxruntime",
}


def import_time(repeats):
    """Median seconds of each IMPORTS statement in a fresh interpreter, interleaved."""
    code = "import time; t = time.perf_counter(); {s}; print(time.perf_counter() - t)"
    # as installed: bytecode cached (the first, untimed round writes it)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    samples = {k: [] for k in IMPORTS}
    for i in range(repeats + 1):
        for name, stmt in IMPORTS.items():
            r = subprocess.run([sys.executable, "-c", code.format(s=stmt)], env=env,
                               capture_output=True, text=True, timeout=120)
            if r.returncode == 0 and i > 0:
                samples[name].append(float(r.stdout.strip().splitlines()[-1]))
    return {k: statistics.median(v) if v else None for k, v in samples.items()}


def package_size():
    """Bytes of the files a wheel would carry, raw and deflated (the wheel's size, about).

    `pip wheel .` would compile the whole core again (a minute); the wheel is
    a zip of exactly these files, so zipping them is the estimate.
    """
    keep = re.compile(r"\.(py|so|pyd|pxd|h|a|pc|typed)$")
    files = [p for p in PACKAGE.rglob("*") if p.is_file() and keep.search(p.name)
             and "__pycache__" not in p.parts and "tests" not in p.parts]
    raw = sum(p.stat().st_size for p in files)
    with tempfile.TemporaryDirectory() as tmp:
        zpath = Path(tmp) / "cconv.zip"
        with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as z:
            for p in files:
                z.write(p, p.relative_to(PACKAGE.parent))
        zipped = zpath.stat().st_size
    return {"files": len(files), "installed_bytes": raw, "wheel_estimate_bytes": zipped}


MEMORY_CHILD = r"""
import sys
import numpy as np
engine = sys.argv[1]


def peak_rss():   # VmHWM: ru_maxrss would count the parent's pages from before exec
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))


from cconv.examples.digits import load_data
x, y, _, _ = load_data()
import gc; gc.collect()
base = peak_rss()
if engine == "cconv":
    import cconv
    from cconv.examples.digits import build_model
    net = build_model(seed=0)
    cconv.fit(net, x, y, epochs=2, batch_size=32, optimizer=cconv.optim.SGD(net, lr=0.01),
              progress=False)
else:
    import torch
    torch.set_num_threads(1)
    base = peak_rss()
    t = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 5, padding="same"), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(6, 16, 5, padding="same"), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(64, 120), torch.nn.ReLU(), torch.nn.Linear(120, 84),
        torch.nn.ReLU(), torch.nn.Linear(84, 10))
    opt = torch.optim.SGD(t.parameters(), lr=0.01)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for epoch in range(2):
        for i in range(0, len(xt), 32):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(t(xt[i:i + 32]), yt[i:i + 32]).backward()
            opt.step()
peak = peak_rss()
print(peak * 1024, (peak - base) * 1024)
"""


def peak_memory():
    """Peak RSS of 2 epochs of LeNet training on digits: cconv vs torch, fresh processes.

    Both the whole-process peak and the growth during training (after the
    data and, for torch, the library are loaded) are reported; the ratio is
    of the growth, the part the engine controls.
    """
    out = {}
    for engine in ("cconv", "torch"):
        try:
            r = subprocess.run([sys.executable, "-c", MEMORY_CHILD, engine], capture_output=True,
                               text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
        except subprocess.TimeoutExpired:
            out[engine] = {"error": "timed out"}
            continue
        if r.returncode != 0:
            out[engine] = {"error": (r.stderr.strip().splitlines() or ["?"])[-1]}
            continue
        peak, growth = map(int, r.stdout.split()[-2:])
        out[engine] = {"peak_rss_bytes": peak, "training_growth_bytes": growth}
    return out


def footprint_rows(quick, only):
    rows = []
    if not only or "import" in only:
        t = import_time(5 if quick else 15)
        anchors = {f"{k}_ms": t[k] * 1e3 for k in ("numpy", "onnxruntime") if t[k]}
        for case, key in (("import_time", "cconv"), ("import_time_ready", "cconv_ready")):
            if t[key] is not None:
                rows.append({"suite": "footprint", "case": case, "threads": 0,
                             "cconv_ms": t[key] * 1e3, "limit_ms": 150.0, **anchors})
    if not only or "size" in only:
        s = package_size()
        rows.append({"suite": "footprint", "case": "wheel_size_estimate", "threads": 0,
                     "unit": "MB", "cconv_ms": s["wheel_estimate_bytes"] / 1e6, "limit_ms": 5.0,
                     "installed_MB": s["installed_bytes"] / 1e6, "files": s["files"]})
    if not only or "memory" in only:
        m = peak_memory()
        c, t = m.get("cconv", {}), m.get("torch", {})
        if "training_growth_bytes" in c:
            row = {"suite": "footprint", "case": "peak_memory/lenet_digits_train", "threads": 1,
                   "unit": "MB", "cconv_ms": c["training_growth_bytes"] / 1e6,
                   "cconv_peak_rss_MB": c["peak_rss_bytes"] / 1e6}
            if "training_growth_bytes" in t:
                row["torch_ms"] = t["training_growth_bytes"] / 1e6
                row["torch_peak_rss_MB"] = t["peak_rss_bytes"] / 1e6
            else:
                row["torch_error"] = t.get("error")
            rows.append(row)
            if "peak_rss_bytes" in t:
                rows.append({"suite": "footprint", "case": "peak_rss/lenet_digits_train",
                             "threads": 1, "unit": "MB",
                             "cconv_ms": c["peak_rss_bytes"] / 1e6,
                             "torch_ms": t["peak_rss_bytes"] / 1e6})
    return rows


# ---------------------------------------------------------------- running

def run_bench(name, threads, quick, out_dir, log, saving=False):
    script, args = BENCHES[name]
    path = HERE / script
    if not path.exists():
        return {"bench": name, "status": "absent"}
    # beside, not over, the JSON each bench's owner commits (bench/results/<name>.json)
    out = out_dir / "suite" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    limit = LIMITS.get(name, DEFAULT_LIMIT)[0 if quick else 1]
    cmd = [sys.executable, str(path)] + args(threads, quick, out)
    t0 = time.perf_counter()
    print(f"[run] {name}: {' '.join(cmd[1:])}", file=log, flush=True)
    try:
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=limit,
                           env=dict(os.environ, CCONV_BENCH_SAVE="1" if saving else "0"))
    except subprocess.TimeoutExpired:
        return {"bench": name, "status": f"timed out after {limit} s", "json": None}
    seconds = time.perf_counter() - t0
    status = "ok" if r.returncode == 0 else f"exit {r.returncode}: " + \
        ((r.stderr.strip().splitlines() or ["?"])[-1])[:300]
    own = out_dir / f"{name}.json"   # a bench that ignores --out writes here
    if not out.exists() and own.exists() and own.stat().st_mtime >= time.time() - seconds - 1:
        out = own
    print(f"[run] {name}: {status} in {seconds:.0f} s", file=log, flush=True)
    return {"bench": name, "status": status, "seconds": round(seconds, 1),
            "json": str(out) if out.exists() and r.returncode == 0 else None}


def collect(bench, json_path):
    """Rows of one bench's JSON with their ratios: anchor time / cconv time."""
    try:
        data = json.loads(Path(json_path).read_text())
    except (OSError, ValueError):
        return []
    if isinstance(data, dict) and isinstance(data.get("runs"), dict):
        return _memory_rows(bench, data["runs"])
    rows = data.get("results", data) if isinstance(data, dict) else data
    out = []
    for r in rows if isinstance(rows, list) else []:
        if not isinstance(r, dict):
            continue
        # a row that failed (the zoo's import errors) is kept for the summary's failure list
        if isinstance(r.get("cconv_ms"), (int, float)) or r.get("status", "ok") != "ok":
            out.append(dict(r, suite=bench))
    return out


def _memory_rows(bench, runs):
    """bench_memory.py's {"cconv/train": {"work_mib", "peak_mib"}, ...} as rows (MiB)."""
    rows = []
    for mode in ("train", "infer"):
        c, t = runs.get(f"cconv/{mode}"), runs.get(f"torch/{mode}")
        if not isinstance(c, dict):
            continue
        for key, case in (("work_mib", "memory_work"), ("peak_mib", "memory_peak_rss")):
            if isinstance(c.get(key), (int, float)):
                row = {"suite": bench, "case": f"{case}/lenet_{mode}_b64", "threads": 1,
                       "unit": "MiB", "cconv_ms": c[key]}
                if isinstance(t, dict) and isinstance(t.get(key), (int, float)):
                    row["torch_ms"] = t[key]
                rows.append(row)
    return rows


def ratios(row):
    """{anchor: anchor_ms / cconv_ms}; for limits, limit / value."""
    c = row["cconv_ms"]
    out = {}
    for key, value in row.items():
        name = key[:-3]
        # other figures of cconv itself, and best-case samples, are not anchors
        if key.endswith("_ms") and not name.startswith("cconv") and not name.endswith("_min") \
                and isinstance(value, (int, float)) and value > 0 and c > 0:
            out[name] = value / c
    return out


def target_of(case, anchor):
    for pattern, a, minimum in TARGETS:
        if a == anchor and re.search(pattern, case):
            return minimum
    return None


def summarise(rows):
    table = []
    for r in rows:
        if not isinstance(r.get("cconv_ms"), (int, float)):
            continue   # a failed row: listed apart by markdown()
        for anchor, ratio in sorted(ratios(r).items()):
            target = target_of(r["case"], anchor)
            table.append({"suite": r["suite"], "case": r["case"], "threads": r.get("threads"),
                          "cconv": r["cconv_ms"], "anchor": anchor,
                          "anchor_value": r[f"{anchor}_ms"], "unit": r.get("unit", "ms"),
                          "ratio": ratio, "target": target,
                          "met": None if target is None else ratio >= target})
    return table


def markdown(info, runs, table, rows=()):
    lines = ["# cconv benchmark summary", "",
             f"{info['cpu']} ({', '.join(info['flags']) or 'no AVX2'}), "
             f"{info['cpus_available']} of {info['cpu_count']} CPUs available, threads "
             f"{info['threads_benchmarked']}; {info['date_utc']} UTC, commit "
             f"{info.get('git_commit', '?')}, load average before "
             f"{', '.join(f'{x:.1f}' for x in info['load_average_before'])}.", "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v), "",
             "Ratio = anchor / cconv (> 1: cconv is faster or smaller); for limits, "
             "limit / cconv. Anchors measured in the same run, interleaved.", "",
             "| suite | case | threads | cconv | anchor | anchor value | ratio | target | met |",
             "|---|---|---|---|---|---|---|---|---|"]
    for t in table:
        unit = t["unit"]
        met = "" if t["met"] is None else ("yes" if t["met"] else "**no**")
        target = "" if t["target"] is None else f">= {t['target']:g}x"
        lines.append(f"| {t['suite']} | {t['case']} | {t['threads']} | {t['cconv']:.4g} {unit} "
                     f"| {t['anchor']} | {t['anchor_value']:.4g} {unit} | {t['ratio']:.2f}x "
                     f"| {target} | {met} |")
    missing = {a: v for a, v in info.get("anchors", {}).items() if v.startswith("not installed")}
    lines += [f"| all | {anchor}: every row against it | | | {anchor} | {why} | | | **missing** |"
              for anchor, why in missing.items()]
    failed = [r for r in rows if r.get("status", "ok") != "ok"]
    if failed:
        lines += ["", "| suite | case | threads | status (not ok) |", "|---|---|---|---|"]
        lines += [f"| {r['suite']} | {r['case']} | {r.get('threads')} | {r['status']} |"
                  for r in failed]
    lines += ["", "| bench | status | seconds |", "|---|---|---|"]
    lines += [f"| {r['bench']} | {r['status']} | {r.get('seconds', '')} |" for r in runs]
    return "\n".join(lines) + "\n"


def plot(table, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("[run] matplotlib is not installed: no plot (pip install matplotlib)",
              file=sys.stderr)
        return None
    rows = [t for t in table if t["target"] is not None or t["anchor"] in
            ("torch", "onnxruntime", "cv2", "numpy")]
    if not rows:
        return None
    labels = [f"{t['case']} {t['threads']}t vs {t['anchor']}" for t in rows]
    fig, ax = plt.subplots(figsize=(9, max(3, 0.22 * len(rows) + 1)))
    y = range(len(rows))
    colors = ["tab:green" if t["met"] else "tab:red" if t["met"] is False else "tab:blue"
              for t in rows]
    ax.barh(list(y), [t["ratio"] for t in rows], color=colors)
    for i, t in enumerate(rows):
        if t["target"] is not None:
            ax.plot([t["target"]] * 2, [i - 0.4, i + 0.4], color="black", lw=1.5)
    ax.axvline(1.0, color="gray", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_yticks(list(y))
    ax.set_yticklabels(labels, fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("anchor / cconv (log; > 1: cconv faster; black tick: target)")
    ax.set_title("cconv against its anchors", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="each bench's quick mode")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--only", default="", help="comma-separated benches "
                    f"({', '.join(BENCHES)}, import, size, memory); default all")
    ap.add_argument("--save", action="store_true",
                    help="write into the committed bench/results (default: bench/results/local)")
    ap.add_argument("--out-dir", default=None,
                    help="default bench/results/local, or bench/results with --save")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--resummarise", action="store_true",
                    help="only rewrite summary.md/png (and ratios) from summary.json's rows")
    args = ap.parse_args(argv)
    if args.out_dir is None:
        args.out_dir = str(HERE / "results" / ("" if args.save else "local"))
    if args.resummarise:
        path = Path(args.out_dir) / "summary.json"
        summary = json.loads(path.read_text())
        summary["ratios"] = table = summarise(summary["rows"])
        path.write_text(json.dumps(summary, indent=1) + "\n")
        (path.parent / "summary.md").write_text(markdown(summary["machine"], summary["benches"],
                                                         table, summary["rows"]))
        if not args.no_plot:
            plot(table, path.parent / "summary.png")
        return
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    if not threads or min(threads) < 1:
        ap.error(f"--threads must be positive integers, got {args.threads!r}")
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - set(BENCHES) - {"import", "size", "memory"}
    if unknown:
        ap.error(f"--only: unknown {sorted(unknown)}; known: {list(BENCHES)} + import, size, memory")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    info = machine(threads)
    info["anchors"] = anchor_status()
    for anchor, state in info["anchors"].items():
        if state.startswith("not installed"):
            print(f"[run] anchor {anchor} {state}; its rows are marked missing",
                  file=sys.stderr)
    runs, rows = [], []
    for name in BENCHES:
        if only and name not in only:
            continue
        if args.quick and not only and name in QUICK_SKIPS:
            runs.append({"bench": name, "status": "skipped in --quick"})
            continue
        run = run_bench(name, threads, args.quick, out_dir, sys.stderr, saving=args.save)
        runs.append(run)
        if run.get("json"):
            rows += collect(name, run["json"])
    rows += footprint_rows(args.quick, only)
    table = summarise(rows)
    info["load_average_after"] = os.getloadavg()
    info["total_seconds"] = round(time.perf_counter() - t0, 1)
    summary = {"machine": info, "benches": runs, "rows": rows, "ratios": table}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out_dir / "summary.md").write_text(markdown(info, runs, table, rows))
    png = None if args.no_plot else plot(table, out_dir / "summary.png")
    print(markdown(info, runs, table, rows))
    print(f"wrote {out_dir / 'summary.json'}, summary.md{', summary.png' if png else ''} "
          f"in {info['total_seconds']} s", file=sys.stderr)


if __name__ == "__main__":
    main()
