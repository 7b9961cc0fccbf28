"""Hyper-parameter sweeps: one Dask task trains one configuration.

Every configuration trains independently (a whole `cconv.fit` per task); the
training data is scattered to every worker once. A configuration that raises
is recorded with its error and traceback, and a worker lost mid-training is
recorded the same way, so one bad configuration never ends the sweep. Only the
best model's weights travel back to the caller.
"""
import math
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field

import dask
import numpy as np

import cconv

from . import _cluster, _model

__all__ = ["SweepResult", "Trial", "sweep"]

# keys of a configuration that set fit's arguments for that configuration
_FIT_KEYS = ("epochs", "batch_size", "seed", "loss")
# keys that go to the optimizer when build_fn does not make one
_OPTIMIZER_KEYS = ("momentum", "nesterov", "weight_decay", "betas", "eps")


@dataclass
class Trial:
    """One configuration's outcome: metrics and history, or the error it raised."""
    index: int
    config: dict
    metrics: dict = None
    history: dict = None
    error: str = None
    traceback: str = None
    seconds: float = None

    @property
    def ok(self):
        return self.error is None


@dataclass
class SweepResult:
    trials: list
    metric: str
    mode: str
    best_index: int = None
    best_model: object = field(default=None, repr=False)

    @property
    def best(self):
        return None if self.best_index is None else self.trials[self.best_index]

    @property
    def failed(self):
        return [t for t in self.trials if not t.ok]

    def table(self):
        """One line per configuration: its metric or its error; the best marked with *."""
        lines = []
        for t in self.trials:
            mark = "*" if t.index == self.best_index else " "
            if t.ok:
                value = t.metrics.get(self.metric)
                what = f"{self.metric} {value:.4g}" if value is not None else "no metric"
                what += f"  ({t.seconds:.1f}s)"
            else:
                what = f"FAILED {t.error}"
            lines.append(f"{mark} {t.index:3d} {t.config}  {what}")
        return "\n".join(lines)


def _make_optimizer(net, config):
    from cconv.plugins import get_optimizer_class

    hyper = {k: config[k] for k in _OPTIMIZER_KEYS if k in config}
    cls = get_optimizer_class(config.get("optimizer", "adam"))
    return cls(net, lr=config.get("lr", 1e-3), **hyper)


def _train_one(index, config, build_fn, x, y, validation_data, settings, threads):
    """Train one configuration; returns a dict, with the error instead of raising."""
    t0 = time.perf_counter()
    try:
        with _cluster.cconv_threads(_cluster.threads_for_task(threads)):
            built = build_fn(dict(config))
            if isinstance(built, Mapping):
                net, optimizer, scheduler = (built.get("net"), built.get("optimizer"),
                                             built.get("scheduler"))
            else:
                net, optimizer, scheduler = built, None, None
            if net is None or not hasattr(net, "forward"):
                raise TypeError(f"build_fn must return a cconv net or a dict with 'net'; "
                                f"got {type(built).__name__}")
            if optimizer is None:
                optimizer = _make_optimizer(net, config)
            x, y = _model.aligned(x), _model.aligned(y)
            if validation_data is not None:
                validation_data = tuple(_model.aligned(a) for a in validation_data)
            fit_args = dict(settings)
            fit_args.update({k: config[k] for k in _FIT_KEYS if k in config})
            history = cconv.fit(net, x, y, optimizer=optimizer, scheduler=scheduler,
                                validation_data=validation_data, progress=False, **fit_args)
            metrics = {k: v[-1] for k, v in history.items()
                       if v and k in ("loss", "accuracy", "val_loss", "val_accuracy")}
            data, _ = _model.model_bytes(net)
        return {"index": index, "metrics": metrics, "history": history, "model": data,
                "seconds": time.perf_counter() - t0}
    # a configuration that fails is a result, not a reason to stop the sweep
    except Exception as exc:  # noqa: BLE001
        return {"index": index, "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(), "seconds": time.perf_counter() - t0}


def _without_model(outcome):
    return {k: v for k, v in outcome.items() if k != "model"}


def _check_args(build_fn, configs, x, y, metric, mode):
    if not callable(build_fn):
        raise TypeError(f"build_fn must be callable (config -> net), got "
                        f"{type(build_fn).__name__}")
    configs = list(configs)
    if not configs:
        raise ValueError("configs is empty: give at least one configuration")
    for i, config in enumerate(configs):
        if not isinstance(config, Mapping):
            raise TypeError(f"configs[{i}] must be a dict, got {type(config).__name__} "
                            f"{config!r}")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
    if mode not in (None, "min", "max"):
        raise ValueError(f"mode must be 'min', 'max' or None, got {mode!r}")
    if metric is not None and not isinstance(metric, str):
        raise TypeError(f"metric must be a metric name such as 'val_loss', got {metric!r}")
    return configs


def _pick_best(trials, metric, mode):
    best, best_value = None, None
    for t in trials:
        value = t.metrics.get(metric) if t.ok else None
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if best is None or (value < best_value if mode == "min" else value > best_value):
            best, best_value = t.index, value
    return best


def _run_distributed(client, tasks, progress):
    """Submit the trainings; returns ({index: outcome without model}, fetch_model(index))."""
    futures = [client.submit(_train_one, *args, pure=False) for args in tasks]
    summaries = [client.submit(_without_model, f, pure=False) for f in futures]
    if progress:
        import distributed
        distributed.progress(summaries, scheduler=client.scheduler.address)
    outcomes = {}
    for (index, *_), summary in zip(tasks, summaries):
        try:
            outcomes[index] = summary.result()
        # the task never returned: its worker died, ...
        except Exception as exc:  # noqa: BLE001
            outcomes[index] = {"index": index, "error": f"{type(exc).__name__}: {exc}",
                               "traceback": "".join(traceback.format_exception(
                                   type(exc), exc, exc.__traceback__))}
    return outcomes, lambda index: futures[index].result()["model"]


def _run_local(tasks, progress):
    delayed = [dask.delayed(_train_one, pure=False)(*args) for args in tasks]
    if progress:
        from dask.diagnostics import ProgressBar
        with ProgressBar():
            results = dask.compute(*delayed)
    else:
        results = dask.compute(*delayed)
    by_index = {r["index"]: r for r in results}
    return ({i: _without_model(r) for i, r in by_index.items()},
            lambda index: by_index[index]["model"])


def sweep(build_fn, configs, x, y, *, validation_data=None, validation_split=None, epochs=5,
          batch_size=64, loss="cross_entropy", seed=0, metric=None, mode=None, client=None,
          address=None, threads_per_task=None, progress=True):
    """Train one model per configuration, in parallel as Dask tasks; a SweepResult.

    build_fn(config) -> a built cconv net, or {"net": ..., "optimizer": ...,
        "scheduler": ...} (fine-tuning: load weights, freeze, parameter groups
        with their own learning rates, a schedule). It runs on a worker, so it
        must be picklable (a module-level function, or a closure cloudpickle
        can send).
    configs: dicts handed to build_fn. Keys "epochs", "batch_size", "seed",
        "loss" override fit's arguments for that configuration; without an
        optimizer from build_fn one is made from "optimizer" (a registered
        name, default "adam"), "lr" (default 1e-3) and "momentum",
        "weight_decay", "betas", "eps", "nesterov" when present.
    metric / mode: what picks the best: default "val_loss" (min) with
        validation data, else the training "loss"; a name with "loss" in it is
        minimised, any other maximised, unless mode says.
    Returns SweepResult(trials, metric, mode, best_index, best_model): every
    trial with its metrics or its error; best_model loaded on the caller.
    """
    configs = _check_args(build_fn, configs, x, y, metric, mode)
    if validation_data is not None and validation_split:
        raise ValueError("give validation_data or validation_split, not both")
    has_validation = validation_data is not None or bool(validation_split)
    metric = metric or ("val_loss" if has_validation else "loss")
    mode = mode or ("min" if "loss" in metric else "max")
    client = _cluster.resolve_client(client, address)
    threads = _cluster.plan_threads(client, threads_per_task)
    settings = {"epochs": epochs, "batch_size": batch_size, "loss": loss, "seed": seed,
                "validation_split": validation_split}
    x_ref, y_ref = _cluster.share(client, np.asarray(x)), _cluster.share(client, np.asarray(y))
    v_ref = None if validation_data is None else _cluster.share(
        client, tuple(np.asarray(a) for a in validation_data))
    tasks = [(i, dict(c), build_fn, x_ref, y_ref, v_ref, settings, threads)
             for i, c in enumerate(configs)]
    if client is not None:
        outcomes, fetch_model = _run_distributed(client, tasks, progress)
    else:
        outcomes, fetch_model = _run_local(tasks, progress)
    trials = [Trial(i, dict(c), outcomes[i].get("metrics"), outcomes[i].get("history"),
                    outcomes[i].get("error"), outcomes[i].get("traceback"),
                    outcomes[i].get("seconds"))
              for i, c in enumerate(configs)]
    best = _pick_best(trials, metric, mode)
    best_model = None if best is None else _model.net_from_bytes(fetch_model(best))
    return SweepResult(trials, metric, mode, best, best_model)
