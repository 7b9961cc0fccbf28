"""Training checkpoints: everything fit() needs to resume as if never stopped.

    cconv.fit(net, x, y, epochs=20, checkpoint="run.ckpt")               # saved every epoch
    cconv.fit(net, x, y, epochs=20, checkpoint="run.ckpt", resume=True)  # after a crash

One safetensors file, written atomically (cconv.io._atomic_write: a crash
mid-save leaves the previous checkpoint whole): the net's parameters,
the optimizer's state arrays, and in the metadata the rest as JSON: the
optimizer's step counts and groups, the scheduler, the states of the random
generators (fit's shuffling and every layer's own, e.g. Dropout), the epoch
and the history. A run resumed from it reaches bit-identical weights.
"""
import json

import numpy as np

from . import io as cio

__all__ = ["CheckpointError", "load_checkpoint", "save_checkpoint"]

FORMAT = "cconv.checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that does not belong to this net/optimizer, or is not one."""


def _generators(net):
    """{node name: Generator} of the layers that draw random numbers (Dropout)."""
    return {name: layer.rng for name, layer in net.layers()
            if isinstance(getattr(layer, "rng", None), np.random.Generator)}


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"checkpoint: cannot store {type(value).__name__} {value!r}")


def save_checkpoint(path, net, optimizer, scheduler=None, rng=None, epoch=0, history=None):
    """Write net, optimizer (and scheduler, rng) state, epoch and history to path atomically."""
    from safetensors.numpy import save as st_save

    tensors = {f"net/{name}": np.ascontiguousarray(a) for name, a in net.named_parameters()}
    opt = optimizer.state_dict()
    opt_scalars = {}
    for pname, st in opt["state"].items():
        for key, value in st.items():
            if isinstance(value, np.ndarray):
                tensors[f"opt/{pname}/{key}"] = np.ascontiguousarray(value)
            else:
                opt_scalars.setdefault(pname, {})[key] = value
    state = {
        "format": FORMAT, "version": VERSION, "epoch": int(epoch),
        "history": history or {},
        "architecture": _architecture(net),
        "optimizer": {"class": type(optimizer).__name__, "scalars": opt_scalars,
                      "param_groups": opt["param_groups"]},
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "scheduler_class": None if scheduler is None else type(scheduler).__name__,
        "rng": None if rng is None else rng.bit_generator.state,
        "layer_rngs": {n: g.bit_generator.state for n, g in _generators(net).items()},
    }
    meta = {"cconv_checkpoint": json.dumps(state, default=_json_default)}
    cio._atomic_write(path, st_save(tensors, metadata=meta))


def _architecture(net):
    """The net's wiring and layer configs as JSON values, to compare on resume."""
    nodes = [{"name": n, "type": layer.type_name, "inputs": list(net.nodes[n].inputs),
              "config": layer.get_config()} for n, layer in net.layers()]
    arch = {"inputs": list(net.input_names), "outputs": net.output_names, "nodes": nodes}
    return json.loads(json.dumps(arch, default=_json_default))


def _check_architecture(saved, net):
    """A one-line reason why the saved architecture is not net's, or None."""
    own = _architecture(net)
    for key in ("inputs", "outputs"):
        if saved.get(key) != own[key]:
            return f"graph {key} {saved.get(key)} in the checkpoint, {own[key]} in the net"
    s_nodes, o_nodes = saved.get("nodes") or [], own["nodes"]
    for a, b in zip(s_nodes, o_nodes):
        if a != b:
            return (f"node {a.get('name')!r} is {a.get('type')}({a.get('config')}) <- "
                    f"{a.get('inputs')} in the checkpoint, node {b['name']!r} is "
                    f"{b['type']}({b['config']}) <- {b['inputs']} in the net")
    if len(s_nodes) != len(o_nodes):
        return f"{len(s_nodes)} nodes in the checkpoint, {len(o_nodes)} in the net"
    return None


def _check_rng_state(gen, state, what):
    """Raise ValueError unless state can be set on a generator like gen."""
    trial = type(gen.bit_generator)()
    try:
        trial.state = state
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{what}: {exc}") from None


def load_checkpoint(path, net, optimizer, scheduler=None, rng=None):
    """Restore what save_checkpoint wrote into the given objects; returns (epoch, history).

    Everything is checked before anything changes: architecture, parameter
    names, shapes and dtypes, optimizer type and state, scheduler type and
    state, random states. Any mismatch raises CheckpointError naming the path,
    and net, optimizer, scheduler and rng are left exactly as they were.
    """
    tensors, meta = cio.read_safetensors(path)
    try:
        state = json.loads(meta["cconv_checkpoint"])
        if not isinstance(state, dict) or state.get("format") != FORMAT \
                or state.get("version", 0) > VERSION:
            raise ValueError(f"format {state.get('format')!r} version {state.get('version')}")
    except (KeyError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: not a cconv training checkpoint ({exc})") from None
    try:
        plan = _plan_restore(state, tensors, net, optimizer, scheduler, rng)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: does not fit this net/optimizer/scheduler: "
                              f"{exc}") from exc
    # nothing below can fail on a checked plan: the restore is all or nothing
    weights, opt_state, gens = plan
    cio.load_weights(net, weights, strict=True)
    optimizer.load_state_dict(opt_state)
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    if rng is not None and state["rng"] is not None:
        rng.bit_generator.state = state["rng"]
    for name, g in gens.items():
        g.bit_generator.state = state["layer_rngs"][name]
    return state["epoch"], state["history"]


def _plan_restore(state, tensors, net, optimizer, scheduler, rng):
    """Check every part of a checkpoint against the live objects; raise ValueError on a misfit."""
    epoch, history = state.get("epoch"), state.get("history")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
    if not isinstance(history, dict) or not all(isinstance(v, list) for v in history.values()):
        raise ValueError("history must be a dict of per-epoch lists")
    if "architecture" in state:    # checkpoints before this check have none
        reason = _check_architecture(state["architecture"], net)
        if reason:
            raise ValueError(f"another architecture: {reason}")
    weights = {k[4:]: v for k, v in tensors.items() if k.startswith("net/")}
    report = cio.load_weights(net, weights, dry_run=True)
    if not report.ok:
        raise ValueError(f"parameters differ (names, shapes or dtypes): {report}")
    saved_opt = state["optimizer"]
    if saved_opt["class"] != type(optimizer).__name__:
        raise ValueError(f"saved with a {saved_opt['class']} optimizer, resumed with "
                         f"{type(optimizer).__name__}")
    opt_state = {}
    for key, value in tensors.items():
        if key.startswith("opt/"):
            pname, _, field = key[4:].rpartition("/")
            opt_state.setdefault(pname, {})[field] = value
    for pname, scalars in saved_opt["scalars"].items():
        opt_state.setdefault(pname, {}).update(scalars)
    opt_state = {"state": opt_state, "param_groups": saved_opt["param_groups"]}
    optimizer.check_state_dict(opt_state)
    saved_sched = state.get("scheduler")
    if (saved_sched is None) != (scheduler is None):
        raise ValueError(f"saved {'without a scheduler' if saved_sched is None else 'with a scheduler'}"
                         f", resumed {'without one' if scheduler is None else 'with ' + type(scheduler).__name__}")
    if scheduler is not None:
        saved_class = state.get("scheduler_class")
        if saved_class is not None and saved_class != type(scheduler).__name__:
            raise ValueError(f"saved with a {saved_class} scheduler, resumed with "
                             f"{type(scheduler).__name__}")
        scheduler.check_state_dict(saved_sched)
    if rng is not None and state["rng"] is not None:
        _check_rng_state(rng, state["rng"], "fit's random state")
    gens = _generators(net)
    if set(state["layer_rngs"]) != set(gens):
        raise ValueError(f"random layers {sorted(state['layer_rngs'])} in the checkpoint, "
                         f"{sorted(gens)} in the net")
    for name, g in gens.items():
        _check_rng_state(g, state["layer_rngs"][name], f"random state of layer {name!r}")
    return weights, opt_state, gens
