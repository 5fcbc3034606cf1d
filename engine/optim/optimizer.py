"""The optimiser base class: a list of parameters and a per-parameter state."""
from engine import backend


class Optimizer:
    """Holds ``params`` (a list of Parameters) and ``state[i]`` for parameter i.

    Subclasses implement ``step()``, which changes ``p.data`` in place, under no
    graph, from ``p.grad``; parameters whose ``grad`` is None are skipped.
    """

    def __init__(self, params, defaults):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        for name, value in defaults.items():
            if isinstance(value, (int, float)) and value < 0:
                raise ValueError(f"{type(self).__name__}: {name} must be >= 0, got {value}")
        self.defaults = dict(defaults)
        self.state = [{} for _ in self.params]

    def zero_grad(self):
        """Drop every parameter's gradient (set to None, as PyTorch does by default)."""
        for p in self.params:
            p.grad = None

    def step(self):
        raise NotImplementedError

    def state_dict(self):
        """Hyperparameters and a NumPy copy of each parameter's state (buffers, step counts)."""
        return {"defaults": dict(self.defaults),
                "state": [{k: backend.to_numpy(v).copy() if hasattr(v, "shape") else v
                           for k, v in s.items()} for s in self.state]}

    def load_state_dict(self, state_dict):
        state = state_dict["state"]
        if len(state) != len(self.params):
            raise ValueError(f"{type(self).__name__}.load_state_dict: state for {len(state)} "
                             f"parameters, optimiser has {len(self.params)}")
        self.defaults = dict(state_dict["defaults"])
        # copy(): step() updates the buffers in place, so they must not be the dict's arrays
        # (on cpu to_device does not copy), or two optimisers loading one dict would share them.
        self.state = [{k: backend.to_device(v, p.device).copy() if hasattr(v, "shape") else v
                       for k, v in s.items()} for s, p in zip(state, self.params)]

    def _with_grad(self):
        """(parameter, its gradient, its state) for each parameter that has a gradient."""
        return [(p, p.grad, s) for p, s in zip(self.params, self.state) if p.grad is not None]
