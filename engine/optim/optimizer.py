"""The optimiser base class: a list of parameters and a per-parameter state."""
import numbers

from engine import backend


class Optimizer:
    """Holds ``params`` (a list of Parameters) and ``state[i]`` for parameter i.

    Subclasses implement ``step()``, which changes ``p.data`` in place, under no
    graph, from ``p.grad``; parameters whose ``grad`` is None are skipped.
    """

    state_keys = ()  # the names in a parameter's (non-empty) state; "step" is a count, the rest buffers

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
        """Take over another optimiser's ``state_dict()``: training continues bit for bit.

        Everything is checked before anything changes, so a wrong dict fails here, naming the
        parameter and the shapes, and not steps later inside ``step()``: the hyperparameter
        names, one state per parameter, each state's names (``state_keys``), buffers the shape
        of their parameter and step counts integers.
        """
        where = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict) or set(state_dict) != {"defaults", "state"}:
            raise ValueError(f"{where}: expected a dict with keys 'defaults' and 'state' "
                             f"(from state_dict()), got {_describe(state_dict)}")
        defaults, state = state_dict["defaults"], list(state_dict["state"])
        if set(defaults) != set(self.defaults):
            raise ValueError(f"{where}: hyperparameters {sorted(defaults)}, this optimiser has "
                             f"{sorted(self.defaults)}")
        if len(state) != len(self.params):
            raise ValueError(f"{where}: state for {len(state)} parameters, optimiser has {len(self.params)}")
        for i, (s, p) in enumerate(zip(state, self.params)):
            _check_state(where, i, s, p, self.state_keys)
        self.defaults = dict(defaults)
        # astype copies: step() updates the buffers in place, so they must not be the dict's
        # arrays, or two optimisers loading one dict would share them.
        self.state = [{k: int(v) if k == "step" else
                       backend.to_device(v, p.device).astype(p.dtype)
                       for k, v in s.items()} for s, p in zip(state, self.params)]

    def _with_grad(self):
        """(parameter, its gradient, its state) for each parameter that has a gradient."""
        return [(p, p.grad, s) for p, s in zip(self.params, self.state) if p.grad is not None]


def _describe(value):
    return f"shape {tuple(value.shape)}" if hasattr(value, "shape") else type(value).__name__


def _check_state(where, i, state, param, keys):
    """Raise a ValueError naming parameter ``i`` unless ``state`` fits ``param``."""
    if not isinstance(state, dict):
        raise ValueError(f"{where}: state of parameter {i} must be a dict, got {_describe(state)}")
    if state and set(state) != set(keys):
        raise ValueError(f"{where}: state of parameter {i} has {sorted(state)}, expected {sorted(keys)}")
    for k, v in state.items():
        if k == "step":
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{where}: parameter {i}: step must be an int >= 0, got {v!r}")
        elif not hasattr(v, "shape") or tuple(v.shape) != param.shape:
            raise ValueError(f"{where}: parameter {i}: {k} has {_describe(v)}, "
                             f"the parameter has shape {param.shape}")
