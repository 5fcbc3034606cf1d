"""Unstructured weight pruning: a 0/1 mask per weight matrix, kept through training (MATH A7).

A mask m (True = keep) is applied as w <- w * m, and the model keeps the same shapes: the
zeros save memory and time only on hardware or kernels that exploit sparsity, but they show
how few weights a trained network needs. Magnitude pruning keeps the largest |w|:

    scope="layer"    each prunable weight W loses its round(s * W.size) smallest |w|
    scope="global"   one threshold over all prunable weights: the round(s * n) smallest |w|
                     of the n together go, so layers lose different fractions

Ties are broken by position (named order, then row-major), so exactly that many go.
Zhu & Gupta (2017) prune gradually, s_t = s_f + (s_i - s_f)(1 - (t - t0)/T)^3, removing many
weights early, while the network can recover, and few at the end (``gradual_sparsity``).

How the zeros stay zero (``apply_masks``). Each pruned weight gets a gradient hook that
zeroes the gradient at pruned entries (``where``, not ``* m``: an inf gradient times 0 is
nan). An element whose weight, gradient and optimiser state are all zero does not move
under SGD, momentum, Nesterov, weight decay (decay * 0) or Adam (m = 0, so the step is
0 / (sqrt(v) + eps) = 0), so the entries stay exactly 0 with no call after
``optimizer.step()``, provided the optimiser's state is zero there too: it is when the
optimiser has not stepped yet, and ``apply_masks(..., optimizer=opt)`` zeroes a stepped one's
per-element buffers (momentum, exp_avg, exp_avg_sq) at pruned entries. This is
PyTorch's result (torch.nn.utils.prune) without its weight_orig reparametrisation, so parameter
names, state dicts and optimisers built before pruning are unchanged.
``Pruning.reapply()`` re-masks the data (and the optimiser's state): call it after writing
weights outside the optimiser (``load_state_dict`` of a dense checkpoint) or with an
optimiser whose update is not zero at zero gradient and state. Cost: one ``where`` over
each pruned weight per backward; no extra memory but the masks (one byte per weight).
"""
import numpy

from engine import backend
from engine.nn.conv import Conv2d
from engine.nn.linear import Linear

SCOPES = ("layer", "global")


def prunable(model):
    """[(name, Parameter)]: the weights (not biases) of the Linear and Conv2d layers of
    ``model``, in ``named_parameters`` order."""
    weights = {id(m.weight) for m in model.modules() if isinstance(m, (Linear, Conv2d))}
    return [(name, p) for name, p in model.named_parameters() if id(p) in weights]


def _check_sparsity(name, value):
    if not (isinstance(value, (int, float, numpy.floating)) and 0 <= value < 1):
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")


def _smallest(scores, k):
    """A bool mask of ``scores``' shape, False at its k smallest entries (ties: earliest first)."""
    keep = numpy.ones(scores.size, dtype=bool)
    keep[numpy.argsort(scores, axis=None, kind="stable")[:k]] = False
    return keep.reshape(scores.shape)


def magnitude_masks(model, sparsity, scope="layer"):
    """{name: bool array, True = keep} over ``prunable(model)``, pruning a fraction
    ``sparsity`` of the smallest |w| per layer or globally (the table above)."""
    _check_sparsity("magnitude_masks: sparsity", sparsity)
    if scope not in SCOPES:
        raise ValueError(f"magnitude_masks: scope must be one of {SCOPES}, got {scope!r}")
    weights = [(name, numpy.abs(backend.to_numpy(p.data))) for name, p in prunable(model)]
    if scope == "layer":
        return {name: _smallest(w, round(sparsity * w.size)) for name, w in weights}
    flat = numpy.concatenate([w.ravel() for _, w in weights])
    keep = _smallest(flat, round(sparsity * flat.size))
    masks, lo = {}, 0
    for name, w in weights:
        masks[name] = keep[lo:lo + w.size].reshape(w.shape)
        lo += w.size
    return masks


class Pruning:
    """The masks applied to a model and the hooks that keep them (``apply_masks``).

    ``masks``: {name: bool array, True = keep}. ``sparsity()``: the fraction of prunable
    weights that are zero now. ``reapply(optimizer=None)``: re-mask the data (and the
    optimiser's buffers). ``remove()``: drop the hooks; the zeros stay, training may
    move them again."""

    def __init__(self, model, masks, optimizer=None):
        params = dict(model.named_parameters())
        for name, mask in masks.items():
            if name not in params:
                raise ValueError(f"apply_masks: masks names {name!r}, not a parameter of the model")
            if tuple(mask.shape) != params[name].shape:
                raise ValueError(f"apply_masks: masks[{name!r}] has shape {tuple(mask.shape)}, "
                                 f"the parameter {params[name].shape}")
        self.model = model
        self.masks = {name: numpy.asarray(backend.to_numpy(m), dtype=bool)
                      for name, m in masks.items()}
        # Each mask on its parameter's device, once: the hook runs every backward.
        self._on_device = {name: backend.to_device(m, params[name].device)
                           for name, m in self.masks.items()}
        self._params = {name: params[name] for name in self.masks}
        self._handles = [p.register_hook(self._zeroer(self._on_device[name]))
                         for name, p in self._params.items()]
        self.reapply(optimizer)

    @staticmethod
    def _zeroer(mask):
        xp = backend.array_module(mask)
        return lambda grad: xp.where(mask, grad, 0).astype(grad.dtype, copy=False)

    def reapply(self, optimizer=None):
        """w <- w * m for every mask; with ``optimizer``, also each per-element buffer of a
        pruned parameter (any state array of its shape), so that it cannot move them again."""
        for name, p in self._params.items():
            p.data[...] = backend.array_module(p.data).where(self._on_device[name], p.data, 0)
        if optimizer is not None:
            masked = {id(p): self._on_device[name] for name, p in self._params.items()}
            for p, state in zip(optimizer.params, optimizer.state):
                for value in state.values():
                    if id(p) in masked and getattr(value, "shape", None) == p.shape:
                        value[...] = backend.array_module(value).where(masked[id(p)], value, 0)
        return self

    def sparsity(self):
        """The fraction of the model's prunable weights that are exactly zero."""
        weights = [p.data for _, p in prunable(self.model)]
        zeros = sum(int((w == 0).sum()) for w in weights)
        return zeros / max(1, sum(w.size for w in weights))

    def remove(self):
        """Unregister the gradient hooks; the pruned weights keep their zeros."""
        for handle in self._handles:
            handle.remove()
        self._handles = []


def apply_masks(model, masks, optimizer=None):
    """Zero ``model``'s weights where ``masks`` (name -> bool array, True = keep) is False, and
    keep them zero through training (module docstring). Pass the ``optimizer`` if it has
    already stepped, so its momentum or moments are zeroed there too. Returns a Pruning."""
    return Pruning(model, masks, optimizer)


def gradual_sparsity(t, total_steps, final, initial=0.0, start=0):
    """Zhu & Gupta's cubic schedule: s_t = s_f + (s_i - s_f)(1 - (t - start)/T)^3, with
    (t - start)/T clamped to [0, 1]: s_i before ``start``, s_f from ``start + total_steps`` on."""
    if total_steps < 1:
        raise ValueError(f"gradual_sparsity: total_steps must be >= 1, got {total_steps}")
    _check_sparsity("gradual_sparsity: final", final)
    _check_sparsity("gradual_sparsity: initial", initial)
    progress = min(1.0, max(0.0, (t - start) / total_steps))
    return final + (initial - final) * (1.0 - progress) ** 3


def prune_iteratively(model, sparsities, fine_tune, scope="layer", optimizer=None):
    """Rounds of prune-then-retrain (Han et al., 2015): for round k, magnitude-prune ``model``
    to ``sparsities[k]`` (non-decreasing: weights already zero are the smallest, so they stay
    pruned) and call ``fine_tune(k, pruning)``, which trains as the caller likes. Returns the
    last round's Pruning, its hooks still on. The schedule (``gradual_sparsity``, how many
    steps per round) is the caller's."""
    pruning = None
    for k, sparsity in enumerate(sparsities):
        if pruning is not None:
            pruning.remove()
        pruning = apply_masks(model, magnitude_masks(model, sparsity, scope), optimizer)
        fine_tune(k, pruning)
    return pruning
