"""Finite-difference gradient checks for layers and whole graphs (float64).

    from cconv.gradcheck import check_gradients
    layer.build([x.shape[1:]], rng=np.random.default_rng(0)); layer.astype(np.float64)
    check_gradients(layer, [x])             # raises AssertionError on a mismatch

The scalar checked is L = sum(output * R) for a fixed random R, so backward(R)
must give dL/dinput and dL/dparam; both are compared with central differences.
"""
import numpy as np

__all__ = ["check_gradients", "numerical_gradient", "rng_reset"]


def numerical_gradient(f, x, eps=1e-6, coords=None):
    """Central differences of the scalar f() wrt the array x, perturbed in place.

    coords: index tuples to probe (all of x when None); other entries are NaN.
    """
    out = np.full(x.shape, np.nan)
    for idx in (np.ndindex(x.shape) if coords is None else coords):
        old = x[idx]
        x[idx] = old + eps
        fp = f()
        x[idx] = old - eps
        fm = f()
        x[idx] = old
        out[idx] = (fp - fm) / (2 * eps)
    return out


def _generators(obj):
    found = [v for v in vars(obj).values() if isinstance(v, np.random.Generator)]
    nodes = getattr(obj, "nodes", None)  # a Graph: {name: Node(layer=...)}
    if isinstance(nodes, dict):
        for node in nodes.values():
            layer = getattr(node, "layer", None)
            if layer is not None and hasattr(layer, "__dict__"):
                found += _generators(layer)
    return found


def rng_reset(*objects):
    """A callable that restores every np.random.Generator attribute of objects (and of
    a Graph's layers) to its state now, so that each forward draws the same dropout masks."""
    gens = [g for obj in objects for g in _generators(obj)]
    states = [g.bit_generator.state for g in gens]

    def reset():
        for g, s in zip(gens, states):
            g.bit_generator.state = s
    return reset


def _default_params(model):
    trainable = getattr(model, "trainable", None)
    items = model.named_parameters() if hasattr(model, "named_parameters") else []
    return [(n, p) for n, p in items
            if not isinstance(trainable, dict) or trainable.get(n, True)]


def _default_grads(model):
    if hasattr(model, "named_gradients"):
        return dict(model.named_gradients())
    return dict(model.grads)


def _as_tuple(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,)


def check_gradients(model, inputs, *, eps=1e-6, rtol=1e-6, atol=1e-10, training=True,
                    params=True, grad_out=None, seed=0, max_coords=None, reset=None,
                    get_grads=None):
    """Compare model.backward with central differences in float64.

    model: anything with forward(*inputs, training=...) and backward(grad) that
    returns the input gradient(s): a Layer or a Graph. Its parameters must be
    float64 already (model.astype(np.float64)).
    inputs: list of input arrays (copied to float64).
    params: True for every trainable parameter (named_parameters(), filtered
    by model.trainable when it is a dict), False for none, or a list of
    (name, live array) pairs to perturb in place.
    grad_out: the R of L = sum(output * R); random from seed when None (a
    tuple for a model with several outputs).
    max_coords: probe at most this many random entries of each array.
    reset: called before every forward; by default restores the model's
    Generators (see rng_reset) so dropout masks repeat.
    get_grads: returns {name: grad} after backward; default model.named_gradients()
    or model.grads.

    An entry passes when |num - ana| <= rtol * max(|num|, |ana|) + floor, where
    floor = atol + 10 * float64 eps * sum|output * R| / eps covers the rounding of
    the differences. Returns {name: max relative error}; raises AssertionError
    naming every array that fails.
    """
    rng = np.random.default_rng(seed)
    xs = [np.array(x, dtype=np.float64) for x in inputs]
    if params is True:
        plist = _default_params(model)
    elif params is False:
        plist = []
    else:
        plist = list(params)
    for name, p in plist:
        if p.dtype != np.float64:
            raise ValueError(f"parameter {name!r} is {p.dtype}: call model.astype(np.float64) "
                             f"before check_gradients")
    reset = rng_reset(model) if reset is None else reset
    get_grads = (lambda: _default_grads(model)) if get_grads is None else get_grads

    reset()
    outs = _as_tuple(model.forward(*xs, training=training))
    for o in outs:
        if np.asarray(o).dtype != np.float64:
            raise ValueError(f"model output is {np.asarray(o).dtype}, not float64")
    if grad_out is None:
        rs = tuple(rng.standard_normal(np.shape(o)) for o in outs)
    else:
        rs = tuple(np.asarray(r, np.float64) for r in _as_tuple(grad_out))
    magnitude = sum(float(np.abs(o * r).sum()) for o, r in zip(outs, rs))
    floor = atol + 10 * np.finfo(np.float64).eps * magnitude / eps
    gin = model.backward(rs[0] if len(rs) == 1 else rs)
    gin = _as_tuple(gin) if len(xs) > 1 else (gin,)
    analytic_grads = get_grads()
    analytic = [(f"input{i}", x, np.asarray(g)) for i, (x, g) in enumerate(zip(xs, gin))]
    analytic += [(f"param:{n}", p, np.array(analytic_grads[n], np.float64)) for n, p in plist]

    def loss():
        reset()
        ys = _as_tuple(model.forward(*xs, training=training))
        return sum(float((np.asarray(y, np.float64) * r).sum()) for y, r in zip(ys, rs))

    errors, failures = {}, []
    for name, arr, ana in analytic:
        if ana.shape != arr.shape:
            failures.append(f"{name}: gradient shape {ana.shape}, expected {arr.shape}")
            continue
        if max_coords is None or max_coords >= arr.size:
            coords = list(np.ndindex(arr.shape))
        else:
            flat = rng.choice(arr.size, size=max_coords, replace=False)
            coords = [np.unravel_index(i, arr.shape) for i in flat]
        num = numerical_gradient(loss, arr, eps, coords)
        sel = tuple(np.array(c) for c in zip(*coords)) if coords and arr.ndim else ()
        n, a = (num[sel], ana[sel]) if arr.ndim else (num.reshape(1), ana.reshape(1))
        diff = np.abs(n - a)
        scale = np.maximum(np.abs(n), np.abs(a))
        errors[name] = float((diff / np.maximum(scale, floor / rtol)).max()) if diff.size else 0.0
        bad = diff > rtol * scale + floor
        if bad.any():
            k = int(np.argmax(diff - rtol * scale))
            failures.append(f"{name}: {int(bad.sum())}/{diff.size} entries differ, worst at "
                            f"{coords[k]}: numeric {n[k]!r} vs analytic {a[k]!r}")
    if failures:
        raise AssertionError("gradient check failed:\n  " + "\n  ".join(failures))
    return errors
