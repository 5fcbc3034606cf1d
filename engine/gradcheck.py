"""Finite-difference gradient checking (``torch.autograd.gradcheck``'s idea).

For each input x and each entry i, the central difference

    dL/dx_i ~ (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)

has error O(eps^2); in float64 with eps = 1e-6 it agrees with the chain
rule's answer to about 1e-8. L is a random weighted sum of the function's
output, so every output entry's gradient is checked at once.
"""
import numpy

from engine import backend
from engine.autograd import no_grad
from engine.tensor import Tensor


def gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-6, seed=0):
    """Compare ``backward()`` with central differences for every input that requires grad.

    ``fn(*inputs)`` returns a Tensor; inputs should be float64. Returns True, or
    raises AssertionError naming the input, the entry and both values.
    """
    output = fn(*inputs)
    weights = Tensor(numpy.random.default_rng(seed).standard_normal(output.shape),
                     dtype=output.dtype, device=output.device)

    def loss():
        return (fn(*inputs) * weights).sum()

    for t in inputs:
        t.grad = None
    loss().backward()
    for k, t in enumerate(inputs):
        if not t.requires_grad:
            continue
        analytic = backend.to_numpy(t.grad if t.grad is not None else t.data * 0)
        numeric = numpy.zeros(t.shape)
        with no_grad():
            # index t.data itself: reshape(-1) of a non-contiguous array (Tensor(x.T)) is a copy
            for i in numpy.ndindex(t.shape):
                saved = t.data[i].item()
                t.data[i] = saved + eps
                plus = loss().item()
                t.data[i] = saved - eps
                minus = loss().item()
                t.data[i] = saved
                numeric[i] = (plus - minus) / (2 * eps)
        bad = ~numpy.isclose(analytic, numeric, atol=atol, rtol=rtol)
        if bad.any():
            i = tuple(int(j) for j in numpy.argwhere(bad)[0])
            raise AssertionError(f"gradcheck: input {k} (shape {t.shape}) entry {i}: "
                                 f"backward gives {analytic[i]!r}, finite differences "
                                 f"{numeric[i]!r}")
    return True
