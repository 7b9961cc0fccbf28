"""Peak memory of training and inference: cconv vs torch (when installed).

Each measurement runs in a fresh subprocess: it imports the framework,
builds the same LeNet-style net (3x32x32 input, batch 64), records its RSS
after the imports and the build (baseline), runs the work, then reads the
process's peak RSS (VmHWM: ru_maxrss would count the parent's RSS at fork). "work" = peak - baseline is what training
or inference itself needed. Single thread, fixed seeds.

    python bench/bench_memory.py            # writes bench/results/memory.json
"""
import json
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
STEPS, BATCH = 20, 64

CHILD = r"""
import json, sys, os
mode, framework, steps, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
import numpy as np
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
def hwm():   # peak RSS of this process image (ru_maxrss would include the parent's before exec)
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
rng = np.random.default_rng(0)
x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
y = rng.integers(0, 10, batch)
if framework == "cconv":
    import cconv
    from cconv import nn
    cconv.set_num_threads(1)
    net = nn.Sequential(nn.Conv2d(3, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(32 * 8 * 8, 128), nn.ReLU(),
                        nn.Linear(128, 10)).build((3, 32, 32), seed=0)
    opt = cconv.optim.Adam(net, lr=1e-3)
    base = rss()
    peak0 = hwm()
    for _ in range(steps):
        if mode == "train":
            out = net.forward(x, training=True)
            _, g = nn.softmax_cross_entropy(out, y)
            net.backward(g, input_grads=False)
            opt.step()
        else:
            net(x)
else:
    import torch
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tn = torch.nn
    net = tn.Sequential(tn.Conv2d(3, 16, 5, padding=2), tn.ReLU(), tn.MaxPool2d(2),
                        tn.Conv2d(16, 32, 5, padding=2), tn.ReLU(), tn.MaxPool2d(2),
                        tn.Flatten(), tn.Linear(32 * 8 * 8, 128), tn.ReLU(), tn.Linear(128, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    base = rss()
    peak0 = hwm()
    for _ in range(steps):
        if mode == "train":
            opt.zero_grad()
            tn.functional.cross_entropy(net(xt), yt).backward()
            opt.step()
        else:
            with torch.inference_mode():
                net(xt)
peak = hwm()
print(json.dumps({"baseline_mib": base / 2**20, "peak_before_work_mib": peak0 / 2**20,
                  "peak_mib": peak / 2**20,
                  "work_mib": (peak - base) / 2**20}))
"""


def measure(mode, framework):
    proc = subprocess.run([sys.executable, "-c", CHILD, mode, framework, str(STEPS),
                           str(BATCH)], capture_output=True, text=True, timeout=600,
                          check=False, env=dict(os.environ, OMP_NUM_THREADS="1"))
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    import importlib.metadata
    import importlib.util
    frameworks = ["cconv"]
    torch_version = None
    if importlib.util.find_spec("torch") is not None:   # not imported here: see hwm()
        frameworks.append("torch")
        torch_version = importlib.metadata.version("torch")
    results = {"net": "LeNet-style, 3x32x32 input, batch 64, float32, 1 thread",
               "steps": STEPS, "python": platform.python_version(),
               "machine": platform.machine(), "torch": torch_version, "runs": {}}
    results["cconv"] = importlib.metadata.version("cconv")
    for mode in ("train", "infer"):
        for fw in frameworks:
            results["runs"][f"{fw}/{mode}"] = r = measure(mode, fw)
            print(f"{fw:6s} {mode:5s} " + "  ".join(f"{k} {v:.1f}" for k, v in r.items()
                                                    if isinstance(v, float)))
    for mode in ("train", "infer"):
        c, t = results["runs"].get(f"cconv/{mode}"), results["runs"].get(f"torch/{mode}")
        if c and t and "peak_mib" in c and "peak_mib" in t:
            results[f"{mode}_peak_ratio_cconv_over_torch"] = c["peak_mib"] / t["peak_mib"]
    sys.path.insert(0, HERE)
    from _machine import results_dir   # bench/results/local unless CCONV_BENCH_SAVE=1

    out = os.path.join(results_dir(), "memory.json")
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
