"""Reductions over axes. The gradient flows back to every entry that was reduced."""
from engine import backend
from engine.autograd import Function


def normalize_axis(axis, ndim):
    """``axis`` (None, int or tuple, negatives allowed) as a sorted tuple of non-negative ints."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for a in axes:
        if not -max(ndim, 1) <= a < max(ndim, 1):
            raise ValueError(f"axis {a} is out of range for a {ndim}-D tensor")
        out.append(a % ndim if ndim else 0)
    if ndim == 0:
        return ()  # a 0-d tensor: axis 0 or -1 names "the whole thing", as in PyTorch
    if len(set(out)) != len(out):
        raise ValueError(f"repeated axis in {axis}")
    return tuple(sorted(out))


def check_reduction(op, shape, axis):
    """Raise a ValueError naming ``op`` and ``shape`` when ``axis`` (normalized) has no entries:
    a max or argmax of nothing is undefined (PyTorch raises too). A (0, 3) tensor reduced
    over its axis 1 is fine: zero results, each of three entries."""
    empty = [a for a in axis if shape[a] == 0]
    if empty:
        raise ValueError(f"{op}: cannot reduce over an empty axis ({empty[0]}) of shape {tuple(shape)}; "
                         f"{op} of no entries is undefined (pass an axis whose size is not 0)")


def _expand(g, axis, keepdims):
    """Put the reduced axes back into g (as size-1 axes) so it broadcasts against the input."""
    return g if keepdims else backend.array_module(g).expand_dims(g, axis)


class Sum(Function):
    """z = sum of a over ``axis``;  dz/da_i = 1 for every entry: g is copied back to each."""

    def forward(self, a, axis, keepdims):
        self.saved = (a.shape,)
        # bool and integer sums are int64, as in PyTorch (NumPy would keep uint64 for uint8)
        return a.sum(axis=axis, keepdims=keepdims, dtype="int64" if a.dtype.kind in "biu" else None)

    def backward(self, g):
        (shape,) = self.saved
        xp = backend.array_module(g)
        o = self.options
        return (xp.broadcast_to(_expand(g, o["axis"], o["keepdims"]), shape),)


class Max(Function):
    """z = max of a over ``axis``;  dz/da_i = 1/k at the k entries equal to the max, else 0.

    Ties share the gradient evenly (as ``torch.amax`` does), so the sum over the
    reduced entries of dz/da_i is 1, as for a unique maximum.
    """

    def forward(self, a, axis, keepdims):
        check_reduction("max", a.shape, axis)
        z = a.max(axis=axis, keepdims=True)
        xp = backend.array_module(a)
        mask = (a == z) | (xp.isnan(a) & xp.isnan(z))  # a NaN max takes the gradient (PyTorch)
        self.saved = (mask / mask.sum(axis=axis, keepdims=True).astype(a.dtype),)
        return z if keepdims else xp.squeeze(z, axis=axis)

    def backward(self, g):
        (share,) = self.saved
        o = self.options
        return (share * _expand(g, o["axis"], o["keepdims"]),)
