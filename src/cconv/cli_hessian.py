"""`cconv hessian` and `cconv summary`: curvature and size of a saved network.

    cconv hessian digits.safetensors            # top/bottom eigenvalues, trace, verdict
    cconv hessian digits.safetensors --dense --params 11_linear   # full spectrum of a subset
    cconv summary digits.safetensors            # units, weights, connections (notes 2.5)
    cconv summary digits --json                 # an example's architecture, untrained

Plugged into the main CLI through add_parser(subparsers): one function adds both.
"""
import json
import sys
import time

import numpy as np

EXAMPLES = {"digits": "cconv.examples.digits"}


def add_parser(subparsers):
    h = subparsers.add_parser(
        "hessian", help="curvature of the loss at a saved model's weights",
        description="Hessian of the training loss with respect to the weights of a saved "
                    "model (float64, exact Hessian-vector products, BatchNorm/Dropout in "
                    "evaluation mode unless --mode train): the largest and smallest "
                    "eigenvalues by Lanczos, the trace by Hutchinson's estimator, and "
                    "whether the point is a minimum, maximum, saddle or degenerate.")
    h.add_argument("model", help="a .safetensors file written by cconv.save")
    h.add_argument("--data", default=None,
                   help="'digits' (scikit-learn digits, the default for models trained by "
                        "`cconv train digits`) or an .npz file with arrays x and y")
    h.add_argument("--split", choices=["train", "test"], default="train",
                   help="digits split to use (default: train, the loss training minimised)")
    h.add_argument("--samples", type=int, default=None,
                   help="use only the first N samples (default: all)")
    h.add_argument("--loss", default="cross_entropy", help="cross_entropy (default) or mse")
    h.add_argument("--params", nargs="+", default=None, metavar="NAME",
                   help="parameter names or node prefixes (default: all trainable)")
    h.add_argument("--mode", choices=["eval", "train"], default="eval")
    h.add_argument("-k", type=int, default=3, help="eigenvalues at each end (default 3)")
    h.add_argument("--tol", type=float, default=1e-8, help="Lanczos relative residual")
    h.add_argument("--max-iter", type=int, default=None, help="Lanczos steps at most")
    h.add_argument("--trace-samples", type=int, default=32,
                   help="Hutchinson probes (0 to skip the trace)")
    h.add_argument("--dense", action="store_true",
                   help="form the dense Hessian and use its whole spectrum (refused above "
                        "--max-gb)")
    h.add_argument("--max-gb", type=float, default=1.0,
                   help="memory limit for --dense, in GB (default 1)")
    h.add_argument("--rtol", type=float, default=1e-6,
                   help="eigenvalues within rtol * max|lambda| of 0 count as zero")
    h.add_argument("--batch-size", type=int, default=None,
                   help="evaluate the data in chunks of this many samples")
    h.add_argument("--seed", type=int, default=0)
    h.add_argument("--json", action="store_true", help="print JSON instead of text")
    h.add_argument("--no-progress", action="store_true",
                   help="no progress bar (it goes to stderr)")
    h.set_defaults(func=run_hessian, command="hessian")

    s = subparsers.add_parser(
        "summary", help="size of a network: units, weights, connections, FLOPs",
        description="Size report of a saved model (or a bundled example's architecture): "
                    "per layer output units, weights, connections, multiply-adds, training "
                    "cost, activation memory and receptive field; the fully connected "
                    "equivalent of each convolution; the rule of thumb of the notes.")
    s.add_argument("model", help="a .safetensors file, or an example name (digits)")
    s.add_argument("--input-shape", type=int, nargs="+", default=None, metavar="D",
                   help="per-sample input shape, e.g. 1 28 28 (default: as saved)")
    s.add_argument("--batch-size", type=int, default=1)
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(func=run_summary, command="summary")
    return h, s


def run(args):
    return args.func(args)


# ---------------------------------------------------------------- loading
def _load_model(path, command):
    from .io import WeightFileError, load, read_safetensors

    try:
        net = load(path)
        _, metadata = read_safetensors(path)
    except ValueError as exc:   # WeightFileError, WeightsMismatchError, GraphError
        from .cli import one_line

        raise SystemExit(f"cconv {command}: {one_line(exc)}") from None
    return net, metadata


def _load_data(args, metadata):
    source = args.data or metadata.get("example")
    if source == "digits":
        from .examples.digits import load_data

        x_train, y_train, x_test, y_test = load_data()
        x, y = (x_train, y_train) if args.split == "train" else (x_test, y_test)
        label = f"digits {args.split} split"
    elif source and source.endswith(".npz"):
        try:
            with np.load(source, allow_pickle=False) as data:
                x, y = data["x"], data["y"]
        except (OSError, KeyError, ValueError) as exc:
            raise SystemExit(f"cconv hessian: cannot read x and y from {source}: "
                             f"{exc}") from None
        from .preprocessing import Preprocessing

        prep = Preprocessing.from_metadata(metadata)
        x = prep.apply(x, dtype=np.float64) if prep is not None else x
        label = source
    else:
        raise SystemExit("cconv hessian: say which data the loss is on: --data digits or "
                         "--data file.npz (arrays x and y)")
    if args.samples is not None:
        if args.samples < 1:
            raise SystemExit(f"cconv hessian: --samples must be positive, got {args.samples}")
        x, y = x[:args.samples], y[:args.samples]
    return x, y, label


# ---------------------------------------------------------------- hessian
def run_hessian(args):
    from . import analysis

    net, metadata = _load_model(args.model, "hessian")
    x, y, label = _load_data(args, metadata)
    t0 = time.perf_counter()
    try:
        op = analysis.HessianOperator(net, args.loss, x, y, params=args.params,
                                      mode=args.mode, batch_size=args.batch_size,
                                      seed=args.seed)
    except (KeyError, ValueError) as exc:
        raise SystemExit(f"cconv hessian: {exc}") from None
    out = {"model": args.model, "data": label, "samples": len(y), "loss_name": str(args.loss),
           "mode": args.mode, "parameters": op.size, "arrays": len(op.names)}
    say = (lambda *a: None) if args.json else print
    say(f"{args.model}: {op.size:,} parameters in {len(op.names)} arrays; loss "
        f"{args.loss} on {len(y)} samples ({label}), {args.mode} mode, float64")
    loss, grad = op.loss_and_gradient()
    out["loss"], out["gradient_norm"] = loss, float(np.linalg.norm(grad))
    say(f"loss {loss:.6g}   |gradient| {out['gradient_norm']:.3g}")
    k = min(args.k, max(op.size // 2, 1))
    bar = _count_hvps(op, _hvp_budget(op.size, k, args), disable=args.no_progress)
    try:
        info, ends = _spectrum(op, k, args, say)
    finally:
        bar.close()
    out.update(info)
    _report(out, args, say, ends, t0)
    return 0


def _hvp_budget(n, k, args):
    """Hessian-vector products the run makes at most (the bar's total)."""
    if args.dense:
        return n
    want = 2 * k
    steps = min(n, max(4 * want + 40, 120)) if args.max_iter is None else min(args.max_iter, n)
    return steps + want + max(args.trace_samples, 0)


def _count_hvps(op, total, disable):
    """A progress bar (stderr) ticked by every Hessian-vector product of op."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="Hessian-vector products", unit="hvp", file=sys.stderr,
               disable=disable, leave=False, dynamic_ncols=True)
    matvec = op.matvec

    def counted(v):
        out = matvec(v)
        bar.update(1)
        return out

    op.matvec = counted   # an instance attribute: dense() and Lanczos both call it
    return bar


def _spectrum(op, k, args, say):
    """({how, trace...}, ends): the eigenvalues at both ends, by Lanczos or dense."""
    from . import analysis
    from .analysis.hessian import HessianTooLargeError

    out = {}
    if args.dense:
        from .linalg import eigvalsh

        if not (args.max_gb > 0 and np.isfinite(args.max_gb)):
            raise SystemExit(f"cconv hessian: --max-gb must be a positive number, got "
                             f"{args.max_gb}")
        try:
            h = op.dense(max_bytes=int(args.max_gb * 1e9), log_fn=say)
        except HessianTooLargeError as exc:
            raise SystemExit(f"cconv hessian: {exc} (here: --max-gb)") from None
        lam = eigvalsh(h)
        out["trace"] = float(np.trace(h))
        out["trace_method"] = "exact (dense)"
        out["eigen_method"] = "dense (cconv.linalg.eigvalsh)"
        return out, (lam[:k], lam[-k:], np.zeros(k), np.zeros(k), lam)
    res = analysis.top_eigenvalues(op, k=k, which="both", tol=args.tol,
                                   max_iter=args.max_iter, seed=args.seed)
    out["lanczos"] = {"iterations": res.iterations, "hvps": res.n_matvec,
                      "converged": bool(res.converged), "tol": args.tol}
    out["eigen_method"] = "Lanczos"
    if args.trace_samples > 0:
        tr = analysis.hutchinson_trace(op, samples=args.trace_samples, seed=args.seed)
        out["trace"], out["trace_stderr"] = tr.estimate, tr.stderr
        out["trace_method"] = f"Hutchinson, {args.trace_samples} probes"
    lam, residuals = res.eigenvalues, res.residuals
    return out, (lam[:k], lam[-k:], residuals[:k], residuals[-k:], lam)


def _report(out, args, say, ends, t0):
    """Print the result (text or JSON); ends: bottom, top, their residuals, all values."""
    from . import analysis

    bottom, top, res_bottom, res_top, verdict_from = ends
    out["top_eigenvalues"] = [float(v) for v in top[::-1]]
    out["bottom_eigenvalues"] = [float(v) for v in bottom]
    out["top_residuals"] = [float(v) for v in res_top[::-1]]
    out["bottom_residuals"] = [float(v) for v in res_bottom]
    verdict = analysis.definiteness(verdict_from, rtol=args.rtol)
    out["classification"] = verdict["label"]
    out["zero_tolerance"] = verdict["tol"]
    out["seconds"] = time.perf_counter() - t0
    if args.json:
        print(json.dumps(out, indent=2))
        return
    if "lanczos" in out:
        lz = out["lanczos"]
        say(f"Lanczos: {lz['iterations']} steps, {lz['hvps']} Hessian-vector products, "
            f"{'converged' if lz['converged'] else 'not converged'} to {args.tol:g}")
    say("largest eigenvalues:  " + "  ".join(
        f"{v: .6g} (res {r:.1e})" for v, r in zip(out["top_eigenvalues"],
                                                   out["top_residuals"])))
    say("smallest eigenvalues: " + "  ".join(
        f"{v: .6g} (res {r:.1e})" for v, r in zip(out["bottom_eigenvalues"],
                                                   out["bottom_residuals"])))
    if "trace" in out:
        pm = f" +- {out['trace_stderr']:.3g}" if "trace_stderr" in out else ""
        say(f"trace: {out['trace']:.6g}{pm} ({out['trace_method']})")
    lmax, lmin = out["top_eigenvalues"][0], out["bottom_eigenvalues"][0]
    say(f"classification: {verdict['label']} (eigenvalues within {verdict['tol']:.2g} of 0 "
        f"count as zero; rtol {args.rtol:g})")
    explain = {
        "saddle": f"the loss curves down along some direction (lambda_min = {lmin:.3g}, "
                  f"{abs(lmin) / max(abs(lmax), 1e-300):.2%} of lambda_max)",
        "minimum": "every direction curves up: a strict local minimum if the gradient is 0",
        "maximum": "every direction curves down",
        "degenerate": "no direction curves down but some are flat: the second-order test "
                      "is inconclusive",
    }[verdict["label"]]
    say(f"  {explain}")
    if not args.dense:
        say("  (Lanczos Ritz values lie inside the spectrum: lambda_min <= the smallest "
            "and lambda_max >= the largest shown, so negative/positive signs are certain)")
    say(f"  |gradient| = {out['gradient_norm']:.3g}: "
        + ("close to a critical point" if out["gradient_norm"] < 1e-2 * max(1.0, abs(lmax))
           else "not a critical point; the verdict describes the local curvature only"))
    say(f"({out['seconds']:.1f}s)")
    sys.stdout.flush()


# ---------------------------------------------------------------- summary
def run_summary(args):
    from .analysis import summary

    if args.model in EXAMPLES:
        import importlib

        net = importlib.import_module(EXAMPLES[args.model]).build_model()
    else:
        net, _ = _load_model(args.model, "summary")
    shape = tuple(args.input_shape) if args.input_shape else None
    try:
        report = summary(net, shape, batch_size=args.batch_size)
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"cconv summary: {exc}") from None
    if args.json:
        print(report.to_json(indent=2))
    else:
        print(f"{args.model}")
        print(report.table())
    return 0
