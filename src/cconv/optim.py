"""Optimizers (SGD, Adam, AdamW) and learning-rate schedules, with torch's formulas.

An optimizer updates a net's parameter arrays in place from the gradients its
layers wrote. Parameters are referred to by name ("conv1.weight"), so groups,
state and checkpoints survive `net.astype()` and `load_weights()`, which may
replace the arrays. Frozen parameters (`net.freeze(...)`) are skipped
entirely: no update, no weight decay, no state.

    opt = Adam(net, lr=1e-3)                                   # every parameter
    opt = SGD([{"params": "features", "lr": 1e-4},             # by prefix or names;
               {"params": ["fc.weight", "fc.bias"]}],          # only those listed
              net=net, lr=1e-2, momentum=0.9)
"""
import math
from typing import ClassVar

import numpy as np

__all__ = [
    "OPTIMIZERS",
    "SGD",
    "Adam",
    "AdamW",
    "CosineAnnealingLR",
    "LRScheduler",
    "Optimizer",
    "StepLR",
]


class Optimizer:
    """Base class: parameter groups by name, step/zero_grad, state_dict.

    Subclasses set `defaults` (hyperparameter -> default) and implement
    `_update(param, grad, state, group)`, changing param in place.
    """

    defaults: ClassVar[dict] = {}
    default_lr = 1e-3   # torch's default for SGD, Adam and AdamW

    def __init__(self, params, lr=None, net=None, **hyper):
        if hasattr(params, "named_parameters"):
            net, groups = params, [{"params": None}]
        else:
            if net is None:
                raise TypeError(f"{type(self).__name__}: pass a net, or parameter groups "
                                f"together with net=...")
            groups = [dict(g) if isinstance(g, dict) else {"params": g} for g in params]
            if not groups:
                raise ValueError(f"{type(self).__name__}: no parameter groups given")
        unknown = set(hyper) - set(self.defaults)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no hyperparameter(s) "
                            f"{sorted(unknown)}; known: lr, {', '.join(self.defaults)}")
        base = dict(self.defaults, **hyper)
        base["lr"] = self.default_lr if lr is None else lr
        self.net = net
        self.param_groups = []
        self._selectors = []
        for index, group in enumerate(groups):
            bad = set(group) - set(base) - {"params"}
            if bad:
                raise ValueError(f"parameter group {index} has unknown key(s) {sorted(bad)}")
            full = dict(base, **{k: v for k, v in group.items() if k != "params"})
            full["params"] = []
            full.setdefault("initial_lr", full["lr"])
            self._check_hyper(full)
            self.param_groups.append(full)
            self._selectors.append(group["params"])
        self.state = {}       # name -> {"step": int, buffers...}
        self._refs = self._refs_plan = None
        self._bound = False
        # An unbuilt net has no parameters yet: bind on first use, as Keras does.
        if getattr(net, "built", True):
            self.bind()

    def bind(self):
        """Resolve each group's selector to parameter names (once the net is built)."""
        if self._bound:
            return
        if not getattr(self.net, "built", True):
            raise RuntimeError(f"{type(self).__name__}: the net is not built yet, so it has "
                               f"no parameters; call net.build(input_shape) first")
        seen = {}
        for index, (group, selector) in enumerate(zip(self.param_groups, self._selectors)):
            names = self.net.select(selector)
            for name in names:
                if name in seen:
                    raise ValueError(f"parameter {name!r} is in groups {seen[name]} and "
                                     f"{index}; each parameter may be in one group only")
                seen[name] = index
            group["params"] = names
        self._bound = True

    def _check_hyper(self, group):
        if not group["lr"] >= 0:
            raise ValueError(f"lr must be >= 0, got {group['lr']}")

    def _resolve(self):
        """name -> (layer, key): arrays are fetched per step, as they may be replaced.

        Looked up again after the net is rebuilt, since a node may then run
        another layer (transfer.replace_head): a parameter whose layer changed
        starts with fresh state, so the new head trains, not the old one.
        """
        self.bind()
        plan = getattr(self.net, "_plan", None)
        if self._refs is None or plan is not self._refs_plan:
            refs = {name: (layer, key) for name, layer, key in self.net._param_refs()}
            for name, (layer, _) in (self._refs or {}).items():
                if name not in refs or refs[name][0] is not layer:
                    self.state.pop(name, None)
            self._refs, self._refs_plan = refs, plan
        return self._refs

    def _live(self, group):
        """(name, param, grad, trainable) for the group's parameters."""
        refs = self._resolve()
        for name in group["params"]:
            if name not in refs:
                raise ValueError(f"parameter {name!r} of this optimizer is no longer in the "
                                 f"net (its layer was replaced): make a new optimizer")
            layer, key = refs[name]
            yield name, layer.params[key], layer.grads[key], layer.trainable.get(key, True)

    def step(self):
        """One update of every trainable parameter from its current gradient."""
        for group in self.param_groups:
            for name, param, grad, trainable in self._live(group):
                if not trainable:
                    continue
                state = self.state.get(name)
                if state is None:
                    state = self.state[name] = {"step": 0}
                state["step"] += 1
                self._update(param, grad, state, group)

    def zero_grad(self):
        for group in self.param_groups:
            for _, _, grad, _ in self._live(group):
                grad[...] = 0

    def _update(self, param, grad, state, group):
        raise NotImplementedError

    # ---- checkpoints
    def state_dict(self):
        """Copies of the per-parameter state and the groups' hyperparameters."""
        self.bind()
        return {
            "state": {name: {k: (v.copy() if isinstance(v, np.ndarray) else v)
                             for k, v in st.items()} for name, st in self.state.items()},
            "param_groups": [dict(g, params=list(g["params"])) for g in self.param_groups],
        }

    # per-parameter state keys this optimizer writes; None: not declared (plugins)
    state_keys: ClassVar = None

    def check_state_dict(self, state_dict):
        """Raise ValueError if state_dict (as state_dict() wrote it) does not fit; changes nothing."""
        self.bind()
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError("optimizer state_dict must be {'state': ..., 'param_groups': ...}")
        groups = state_dict["param_groups"]
        if not isinstance(groups, list) or len(groups) != len(self.param_groups) or any(
                not isinstance(a, dict) or list(a.get("params", ())) != list(b["params"])
                for a, b in zip(groups, self.param_groups)):
            raise ValueError("optimizer state_dict has other parameter groups than this "
                             "optimizer (names or order differ)")
        for index, (saved, own) in enumerate(zip(groups, self.param_groups)):
            if set(saved) != set(own):
                raise ValueError(f"parameter group {index} has keys {sorted(saved)}, this "
                                 f"{type(self).__name__} {sorted(own)}")
            try:
                self._check_hyper(dict(saved))
            except (TypeError, KeyError) as exc:
                raise ValueError(f"parameter group {index}: bad hyperparameters ({exc})") from None
        params = dict(self.net.named_parameters())
        if not isinstance(state_dict["state"], dict):
            raise ValueError("optimizer state must be a dict by parameter name")
        for name, st in state_dict["state"].items():
            if name not in params:
                raise ValueError(f"optimizer state for unknown parameter {name!r}")
            if not isinstance(st, dict):
                raise ValueError(f"optimizer state for {name!r} must be a dict, got "
                                 f"{type(st).__name__}")
            if self.state_keys is not None and not set(st) <= set(self.state_keys):
                raise ValueError(f"optimizer state {name}: keys {sorted(st)}, a "
                                 f"{type(self).__name__} keeps {sorted(self.state_keys)}")
            step = st.get("step", 0)
            if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
                raise ValueError(f"optimizer state {name}.step must be an int >= 0, "
                                 f"got {step!r}")
            for key, value in st.items():
                if key == "step":
                    continue
                if not isinstance(value, np.ndarray):
                    raise ValueError(f"optimizer state {name}.{key} must be an array, got "
                                     f"{type(value).__name__}")
                if value.shape != params[name].shape or value.dtype.kind != "f":
                    raise ValueError(f"optimizer state {name}.{key} is {value.dtype} "
                                     f"{value.shape}, the parameter {params[name].dtype} "
                                     f"{params[name].shape}")

    def load_state_dict(self, state_dict):
        """Restore state_dict(); checks everything (check_state_dict) before changing anything."""
        self.check_state_dict(state_dict)
        params = dict(self.net.named_parameters())
        groups = state_dict["param_groups"]
        self.param_groups = [dict(g, params=list(g["params"])) for g in groups]
        self.state = {name: {k: (np.array(v, dtype=params[name].dtype)
                                 if isinstance(v, np.ndarray) else v)
                             for k, v in st.items()}
                      for name, st in state_dict["state"].items()}

    def __repr__(self):
        hyper = ", ".join(f"{k}={self.param_groups[0][k]!r}" for k in ["lr", *self.defaults]
                          if k in self.param_groups[0])
        return f"{type(self).__name__}({hyper}, groups={len(self.param_groups)})"


class SGD(Optimizer):
    """torch.optim.SGD: g += wd*p; buf = mu*buf + (1-dampening)*g; p -= lr*(g + mu*buf | buf)."""

    defaults: ClassVar[dict] = {"momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False}
    state_keys = ("step", "momentum_buffer")

    def _check_hyper(self, group):
        super()._check_hyper(group)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("nesterov needs momentum > 0 and dampening 0")

    def _update(self, param, grad, state, group):
        wd, mu = group["weight_decay"], group["momentum"]
        g = grad + wd * param if wd else grad
        if mu:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(g, dtype=param.dtype)
            else:
                buf *= mu
                buf += (1 - group["dampening"]) * g
            g = g + mu * buf if group["nesterov"] else buf
        param -= group["lr"] * g


class Adam(Optimizer):
    """torch.optim.Adam (L2 weight decay added to the gradient; amsgrad optional)."""

    defaults: ClassVar[dict] = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False}
    decoupled = False
    state_keys = ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def _update(self, param, grad, state, group):
        lr, wd = group["lr"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        if wd:
            if self.decoupled:
                param *= 1 - lr * wd
            else:
                grad = grad + wd * param
        if "exp_avg" not in state:
            state["exp_avg"] = np.zeros_like(param)
            state["exp_avg_sq"] = np.zeros_like(param)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(param)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m += (1 - beta1) * (grad - m)            # torch: lerp
        v *= beta2
        v += (1 - beta2) * grad * grad
        t = state["step"]
        step_size = lr / (1 - beta1 ** t)
        bc2_sqrt = math.sqrt(1 - beta2 ** t)
        if group["amsgrad"]:
            np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        denom = np.sqrt(v)
        denom /= bc2_sqrt
        denom += group["eps"]
        param -= step_size * m / denom


class AdamW(Adam):
    """torch.optim.AdamW: p *= 1 - lr*wd (decoupled), then the Adam step."""

    defaults: ClassVar[dict] = dict(Adam.defaults, weight_decay=1e-2)
    decoupled = True


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


# ---------------------------------------------------------------- schedules

class LRScheduler:
    """Sets each group's lr per epoch; call step() once per epoch, after training it.

    The recursive forms are torch's, so a schedule matches torch step by step.
    """

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = 0
        self._last_lr = [g["lr"] for g in optimizer.param_groups]

    def get_last_lr(self):
        return list(self._last_lr)

    def step(self):
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, self._next_lrs()):
            group["lr"] = lr
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def _next_lrs(self):
        raise NotImplementedError

    def state_dict(self):
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def check_state_dict(self, state):
        """Raise ValueError if state (from state_dict()) is not this scheduler's; changes nothing."""
        own = self.state_dict()
        if not isinstance(state, dict) or set(state) != set(own):
            keys = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"scheduler state has keys {keys}, a {type(self).__name__} "
                             f"{sorted(own)}")
        for key in ("base_lrs", "_last_lr"):
            if not isinstance(state[key], list) or len(state[key]) != len(own[key]):
                raise ValueError(f"scheduler state {key} must be a list of "
                                 f"{len(own[key])} learning rates, got {state[key]!r}")
        epoch = state["last_epoch"]
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"scheduler state last_epoch must be an int >= 0, got {epoch!r}")

    def load_state_dict(self, state):
        self.check_state_dict(state)
        self.__dict__.update(state)


class StepLR(LRScheduler):
    """lr *= gamma every step_size epochs."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        if step_size < 1:
            raise ValueError(f"step_size must be >= 1, got {step_size}")
        self.step_size, self.gamma = int(step_size), gamma
        super().__init__(optimizer)

    def _next_lrs(self):
        groups = self.optimizer.param_groups
        if self.last_epoch % self.step_size:
            return [g["lr"] for g in groups]
        return [g["lr"] * self.gamma for g in groups]


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base - eta_min) * (1 + cos(pi * epoch / T_max)) / 2, torch's recursion."""

    def __init__(self, optimizer, T_max, eta_min=0.0):
        if T_max < 1:
            raise ValueError(f"T_max must be >= 1, got {T_max}")
        self.T_max, self.eta_min = int(T_max), eta_min
        super().__init__(optimizer)

    def _next_lrs(self):
        t, T, lo = self.last_epoch, self.T_max, self.eta_min
        groups = self.optimizer.param_groups
        if (t - 1 - T) % (2 * T) == 0:
            return [g["lr"] + (base - lo) * (1 - math.cos(math.pi / T)) / 2
                    for base, g in zip(self.base_lrs, groups)]
        return [(1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T))
                * (g["lr"] - lo) + lo for g in groups]
