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
        "optimizer": {"class": type(optimizer).__name__, "scalars": opt_scalars,
                      "param_groups": opt["param_groups"]},
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "rng": None if rng is None else rng.bit_generator.state,
        "layer_rngs": {n: g.bit_generator.state for n, g in _generators(net).items()},
    }
    meta = {"cconv_checkpoint": json.dumps(state, default=_json_default)}
    cio._atomic_write(path, st_save(tensors, metadata=meta))


def load_checkpoint(path, net, optimizer, scheduler=None, rng=None):
    """Restore what save_checkpoint wrote into the given objects; returns (epoch, history).

    Everything is checked before anything changes: a checkpoint of another
    net (names, shapes) or optimizer raises CheckpointError naming the path.
    """
    tensors, meta = cio.read_safetensors(path)
    try:
        state = json.loads(meta["cconv_checkpoint"])
        if state.get("format") != FORMAT or state.get("version", 0) > VERSION:
            raise ValueError(f"format {state.get('format')!r} version {state.get('version')}")
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a cconv training checkpoint ({exc})") from None
    if state["optimizer"]["class"] != type(optimizer).__name__:
        raise CheckpointError(f"{path}: saved with a {state['optimizer']['class']} optimizer, "
                              f"resumed with {type(optimizer).__name__}")
    weights = {k[4:]: v for k, v in tensors.items() if k.startswith("net/")}
    opt_state = {}
    for key, value in tensors.items():
        if key.startswith("opt/"):
            pname, _, field = key[4:].rpartition("/")
            opt_state.setdefault(pname, {})[field] = value
    for pname, scalars in state["optimizer"]["scalars"].items():
        opt_state.setdefault(pname, {}).update(scalars)
    gens = _generators(net)
    if set(state["layer_rngs"]) != set(gens):
        raise CheckpointError(f"{path}: random layers {sorted(state['layer_rngs'])} in the "
                              f"checkpoint, {sorted(gens)} in the net")
    try:
        report = cio.load_weights(net, weights, strict=False)
        if not report.ok:
            raise ValueError(str(report))
        # the weights are back unchanged if the optimizer's state does not fit
        previous = {k: v.copy() for k, v in net.named_parameters()}
        try:
            optimizer.load_state_dict({"state": opt_state,
                                       "param_groups": state["optimizer"]["param_groups"]})
        except (ValueError, KeyError, TypeError):
            cio.load_weights(net, previous)
            raise
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: does not fit this net/optimizer: {exc}") from exc
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    if rng is not None and state["rng"] is not None:
        rng.bit_generator.state = state["rng"]
    for name, g in gens.items():
        g.bit_generator.state = state["layer_rngs"][name]
    return state["epoch"], state["history"]
