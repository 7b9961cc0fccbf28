"""Fuzz cconv's file loaders: safetensors (cconv.load / io.read_safetensors),
PyTorch checkpoints (plugins/cconv-torch, both the zip and the legacy format)
and ONNX (plugins/cconv-onnx), from seed files written at start.

A loader may return or raise its documented error (a ValueError subclass
naming the file: WeightFileError, TorchFileError, OnnxImportError); any other
exception, a crash, a hang, or an input that makes it allocate far more than
the file's size is a finding (the input is saved under --crashes).

    python bench/fuzz_loaders.py --target safetensors --seconds 600
    python bench/fuzz_loaders.py --target all --seconds 60 --engine mutate

Engines: "atheris" (coverage-guided, libFuzzer; `pip install atheris`) when it
imports, else "mutate": random byte mutations (flip, insert, delete, splice,
interesting integers, JSON edits) of the seeds. Prints one JSON line of
statistics at the end; exit status 0 when nothing was found.

Seeds: a few well-formed files per loader plus the small variants of the
hostile corpus (tests/hostile_corpus.py), so fuzzing starts from every
known attack.
"""
import argparse
import io
import json
import os
import random
import resource
import struct
import sys
import tempfile
import time
import traceback
import tracemalloc
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for plugin in ("cconv-torch", "cconv-onnx"):
    src = os.path.join(ROOT, "plugins", plugin, "src")
    if os.path.isdir(src) and src not in sys.path:
        sys.path.append(src)

cconv = cio = None   # imported in main(), under atheris' instrumentation when it runs


def _import_loaders():
    global cconv, cio
    import cconv
    import cconv.graph
    import cconv.io as cio
    import cconv.nn
    import cconv.plugins
    cconv.plugins.registry()   # the built-ins and plugins, imported now
    for name in ("cconv_torch", "cconv_onnx"):
        try:
            __import__(name)
        except ImportError:
            pass

# A loader may use this much more memory than the file's size (decoding JSON,
# the arrays themselves); beyond it, a header or a pickle made it allocate
# for data that is not in the file.
ALLOC_FACTOR, ALLOC_SLACK = 20, 64 * 2**20
RSS_GROWTH = 512 * 2**20


# ---------------------------------------------------------------- seeds

def corpus_seeds(*targets):
    """The small variants of tests/hostile_corpus.py for these targets (bytes each).

    Fuzzing starts from every attack already known, so mutations explore
    around the budgets rather than only around well-formed files.
    """
    tests = os.path.join(ROOT, "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    try:
        import hostile_corpus
    except ImportError:   # an installed copy without the tests
        return []
    return [c.data for c in hostile_corpus.cases(small=True, targets=targets)]


def _small_net():
    from cconv import nn
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8, 3)).build((1, 4, 4), seed=0)


def safetensors_seeds(tmp):
    net = _small_net()
    path = os.path.join(tmp, "net.safetensors")
    cconv.save(net, path)
    from safetensors.numpy import save as st_save
    plain = st_save({"a": np.arange(6, dtype=np.float32).reshape(2, 3),
                     "b": np.ones(3, np.float64), "c": np.zeros((0, 2), np.int64)})
    with open(path, "rb") as f:
        return [f.read(), plain] + corpus_seeds("safetensors", "load")


def _hand_written_torch_seeds():
    """torch.save's two formats, written by tests/torch_files.py (no torch needed)."""
    tests = os.path.join(ROOT, "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import torch_files as tf
    sd = tf.state_dict_obj({"conv.weight": np.ones((2, 1, 3, 3), np.float32),
                            "conv.bias": np.zeros(2, np.float32)})
    wrapped = {"state_dict": sd, "epoch": 3}
    return [tf.zip_bytes(wrapped), tf.legacy_bytes(wrapped)]


def torch_seeds(tmp):
    try:
        import torch
    except ImportError:
        return _hand_written_torch_seeds() + corpus_seeds("torch")
    seeds = corpus_seeds("torch")
    sd = {"conv.weight": torch.randn(2, 1, 3, 3), "conv.bias": torch.zeros(2),
          "fc.weight": torch.randn(3, 4).t()}   # a non-contiguous one too
    for legacy in (False, True):
        buf = io.BytesIO()
        torch.save({"state_dict": sd, "epoch": 3}, buf,
                   _use_new_zipfile_serialization=not legacy)
        seeds.append(buf.getvalue())
    return seeds


def onnx_seeds(tmp):
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        return []
    w = numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    relu = helper.make_node("Relu", ["y"], ["z"])
    graph = helper.make_graph(
        [node, relu], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT,
                                                          [1, 1, 4, 4])],
        [helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [1, 2, 4, 4])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return [model.SerializeToString()] + corpus_seeds("onnx")


# ---------------------------------------------------------------- targets

def _safetensors_target(path):
    try:
        cio.read_safetensors(path)
    except cio.WeightFileError:
        return
    try:
        cconv.load(path)
    except (cio.WeightFileError, cio.WeightsMismatchError):
        pass


def _torch_target(path):
    from cconv_torch import TorchFileError, load_torch
    try:
        load_torch(path)
    except TorchFileError:
        pass


def _onnx_target(path):
    from cconv_onnx import import_onnx, load_onnx_weights
    from cconv_onnx.errors import OnnxImportError
    for fn in (load_onnx_weights, import_onnx):
        try:
            fn(path)
        except (OnnxImportError, ValueError):   # onnx's own checks raise ValueError
            pass


TARGETS = {
    "safetensors": (safetensors_seeds, _safetensors_target, ".safetensors"),
    "torch": (torch_seeds, _torch_target, ".pt"),
    "onnx": (onnx_seeds, _onnx_target, ".onnx"),
}


def available(name):
    """Whether target name can run here (its plugin source and its seeds' makers)."""
    try:
        if name == "torch":   # seeds come from torch, else from tests/torch_files.py
            import cconv_torch  # noqa: F401
        elif name == "onnx":
            import cconv_onnx  # noqa: F401
            import onnx  # noqa: F401
    except ImportError:
        return False
    return True


class Runner:
    """Runs one target on byte strings: writes them to a file, calls, checks memory."""

    def __init__(self, name, workdir, crashes):
        self.name = name
        _, self.target, suffix = TARGETS[name]
        self.path = os.path.join(workdir, "input" + suffix)
        self.crashes = crashes
        self.runs = 0
        self.findings = []
        self.rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def __call__(self, data):
        self.runs += 1
        with open(self.path, "wb") as f:
            f.write(data)
        # tracemalloc makes a call ~10x slower: trace one run in 8; the peak
        # RSS (ru_maxrss) is checked on every run
        traced = self.runs % 8 == 1
        if traced:
            tracemalloc.start()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.target(self.path)
            problem = None
        except RecursionError:
            problem = None if self.name == "onnx" else "RecursionError"
        except (Exception, SystemExit) as exc:   # anything but the documented error
            where = traceback.extract_tb(exc.__traceback__)[-1]
            problem = (f"{type(exc).__name__}: {exc}"[:300] +
                       f" (at {os.path.basename(where.filename)}:{where.lineno})")
        finally:
            peak = 0
            if traced:
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
        if problem is None and peak > ALLOC_FACTOR * len(data) + ALLOC_SLACK:
            problem = f"allocated {peak} bytes for a {len(data)}-byte file"
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        if problem is None and rss > self.rss0 + RSS_GROWTH:
            problem = f"peak RSS grew to {rss >> 20} MiB on a {len(data)}-byte file"
        if problem is not None:
            self._save(data, problem)
            raise AssertionError(f"{self.name}: {problem}")

    def _save(self, data, problem):
        self.findings.append(problem)
        if self.crashes:
            os.makedirs(self.crashes, exist_ok=True)
            name = os.path.join(self.crashes, f"{self.name}-{len(self.findings)}.bin")
            with open(name, "wb") as f:
                f.write(data)
            with open(name + ".txt", "w") as f:
                f.write(problem + "\n")


# ---------------------------------------------------------------- mutation engine

INTERESTING = [0, 1, 2**31 - 1, 2**31, 2**32 - 1, 2**40, 2**63 - 1, 2**64 - 1]


def mutate(data, rng, seeds):
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        pos = rng.randrange(len(data) + 1) if data else 0
        if op == 0 and data:                      # flip bits
            data[min(pos, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:                             # insert random bytes
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 2 and data:                    # delete a range
            del data[pos:pos + rng.randint(1, 64)]
        elif op == 3:                             # truncate
            del data[pos:]
        elif op == 4 and len(data) >= 8:          # an interesting little-endian integer
            pos = min(pos, len(data) - 8)
            data[pos:pos + 8] = struct.pack("<Q", rng.choice(INTERESTING))
        elif op == 5:                             # splice with another seed
            other = rng.choice(seeds)
            cut = rng.randrange(len(other) + 1)
            data = data[:pos] + bytearray(other[cut:cut + rng.randint(1, 256)])
        elif op == 6:                             # a JSON-looking number edit
            text = bytes(data)
            digits = [i for i in range(len(text)) if 48 <= text[i] <= 57]
            if digits:
                i = rng.choice(digits)
                data[i:i + 1] = str(rng.choice([9, 99999999999, 10**30, -1])).encode()
        else:                                     # duplicate a chunk
            chunk = data[pos:pos + rng.randint(1, 128)]
            data[pos:pos] = chunk
    return bytes(data)


def run_mutate(runner, seeds, seconds, seed=0):
    rng = random.Random(seed)
    for s in seeds:
        runner(s)
    deadline = time.monotonic() + seconds
    corpus = list(seeds)
    while time.monotonic() < deadline:
        runner(mutate(rng.choice(corpus), rng, seeds))


def run_atheris(runner, seeds, seconds, workdir):
    import atheris

    corpus = os.path.join(workdir, "corpus")
    os.makedirs(corpus, exist_ok=True)
    for i, s in enumerate(seeds):
        with open(os.path.join(corpus, f"seed{i}"), "wb") as f:
            f.write(s)

    def one(data):
        runner(bytes(data))

    # libFuzzer exits the process when the time is up: report from an atexit hook
    import atexit
    atexit.register(lambda: _report(runner, "atheris"))
    artifacts = os.path.join(runner.crashes or workdir, "")
    os.makedirs(artifacts, exist_ok=True)
    atheris.Setup([sys.argv[0], f"-max_total_time={max(1, int(seconds))}",
                   "-rss_limit_mb=4096", "-timeout=20", "-print_final_stats=0",
                   f"-artifact_prefix={artifacts}", corpus],
                  one)
    atheris.Fuzz()


def _report(runner, engine):
    print(json.dumps({"target": runner.name, "engine": engine, "runs": runner.runs,
                      "findings": runner.findings}), flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="safetensors", choices=[*TARGETS, "all"])
    ap.add_argument("--seconds", type=float, default=60.0, help="per target")
    ap.add_argument("--engine", default="auto", choices=["auto", "atheris", "mutate"])
    ap.add_argument("--crashes", default=None, help="directory for the inputs that fail")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    engine = args.engine
    if engine == "auto":
        try:
            import atheris
            engine = "atheris"
        except ImportError:
            engine = "mutate"
    if engine == "atheris":   # coverage of cconv's and the plugins' Python code
        import atheris
        with atheris.instrument_imports(include=["cconv", "cconv_torch", "cconv_onnx"]):
            _import_loaders()
    else:
        _import_loaders()
    targets = list(TARGETS) if args.target == "all" else [args.target]
    targets = [t for t in targets if available(t)]
    if engine == "atheris" and len(targets) > 1:
        ap.error("atheris fuzzes one target per process: give --target")
    failed = False
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) \
            as workdir:
        for name in targets:
            runner = Runner(name, workdir, args.crashes)
            seeds = TARGETS[name][0](workdir)
            if engine == "atheris":
                run_atheris(runner, seeds, args.seconds, workdir)   # does not return
            try:
                run_mutate(runner, seeds, args.seconds, args.seed)
            except AssertionError as exc:
                print(f"finding: {exc}", file=sys.stderr)
                failed = True
            _report(runner, engine)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
