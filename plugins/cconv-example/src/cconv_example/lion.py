"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms").

    c = beta1 * m + (1 - beta1) * g
    p -= lr * (sign(c) + weight_decay * p)
    m = beta2 * m + (1 - beta2) * g

Every coordinate moves by exactly lr (plus decay), so Lion wants a learning
rate 3-10x smaller than Adam's.
"""
import numpy as np

from cconv.optim import Optimizer


class Lion(Optimizer):
    defaults = {"betas": (0.9, 0.99), "weight_decay": 0.0}
    default_lr = 1e-4

    def _check_hyper(self, group):
        super()._check_hyper(group)
        b1, b2 = group["betas"]
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"betas must be in [0, 1), got {group['betas']}")
        if group["weight_decay"] < 0:
            raise ValueError(f"weight_decay must be >= 0, got {group['weight_decay']}")

    def _update(self, param, grad, state, group):
        b1, b2 = group["betas"]
        m = state.get("exp_avg")
        if m is None:
            m = state["exp_avg"] = np.zeros_like(param)
        update = np.sign(b1 * m + (1 - b1) * grad)
        if group["weight_decay"]:
            update += group["weight_decay"] * param
        param -= group["lr"] * update
        m *= b2
        m += (1 - b2) * grad
