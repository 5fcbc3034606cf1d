"""Stochastic gradient descent, with PyTorch's exact update rule."""
from engine import kernels
from engine.optim.optimizer import Optimizer


class SGD(Optimizer):
    """theta <- theta - lr * d  (MATH F7), where, for each parameter,

        g = grad + weight_decay * theta
        b = g                                   at the first step (momentum > 0)
        b = momentum * b + (1 - dampening) * g  after that
        d = g + momentum * b   if nesterov,   d = b   if momentum > 0,   d = g otherwise
    """

    state_keys = ("momentum_buffer",)

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov momentum needs momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def step(self):
        o = self.defaults
        for p, g, state in self._with_grad():
            if o["weight_decay"]:
                g = g + o["weight_decay"] * p.data
            if o["momentum"]:
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = g.copy()
                else:
                    kernels.momentum_update_(buf, g, o["momentum"], 1 - o["dampening"])
                g = g + o["momentum"] * buf if o["nesterov"] else buf
            kernels.sgd_update_(p.data, g, o["lr"])   # p -= lr * g, one pass, no temporary
