"""Adam (Kingma & Ba, 2015), with PyTorch's exact update rule."""
import math

from engine import backend
from engine.optim.optimizer import Optimizer


class Adam(Optimizer):
    """For each parameter, at step t = 1, 2, ...:

        g = grad + weight_decay * theta
        m = beta1 m + (1 - beta1) g            (first moment)
        v = beta2 v + (1 - beta2) g^2          (second moment)
        theta <- theta - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    The two bias corrections undo m and v starting at zero.
    """

    state_keys = ("step", "exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Adam: betas must be in [0, 1), got {betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def step(self):
        o = self.defaults
        beta1, beta2 = o["betas"]
        for p, g, state in self._with_grad():
            xp = backend.array_module(p.data)
            if o["weight_decay"]:
                g = g + o["weight_decay"] * p.data
            if not state:
                state.update(step=0, exp_avg=xp.zeros_like(p.data), exp_avg_sq=xp.zeros_like(p.data))
            state["step"] += 1
            t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
            m *= beta1
            m += (1 - beta1) * g
            v *= beta2
            v += (1 - beta2) * g * g
            denom = xp.sqrt(v) / math.sqrt(1 - beta2 ** t) + o["eps"]
            p.data -= (o["lr"] / (1 - beta1 ** t)) * m / denom
