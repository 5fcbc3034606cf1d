"""Gradient hooks: user functions that ``backward()`` calls as gradients become complete.

Two kinds, as in PyTorch (``Tensor.register_hook`` / ``register_post_accumulate_grad_hook``):

    register_hook(fn)                     any tensor that requires grad. ``fn(grad)`` gets the
                                          complete gradient dL/d(tensor), an array, before it is
                                          used (accumulated into a leaf's .grad, or sent down to
                                          the op's inputs). Returning an array (or a Tensor)
                                          replaces the gradient; returning None keeps it.
    register_post_accumulate_grad_hook    leaves only. ``fn(tensor)`` runs right after
      (fn)                                ``tensor.grad`` has been accumulated for this backward.

"Complete" is what the topological order guarantees: a tensor is reached only after every op
that used it has sent its share, so in ``b = a + a; c = b * b`` each hook of ``a`` runs once per
backward, with the sum of both paths. Leaves are placed right after the op that uses them last
(see autograd.topological_order), so an MLP's last layer gets its hooks called first: that is
what lets data parallelism start a bucket's all-reduce while earlier layers still compute, and
what a pipeline stage uses to read the gradient at its input.

Cost: one truth test per node when no hook is registered.
"""


class RemovableHandle:
    """What ``register_*hook`` returns: ``handle.remove()`` unregisters the hook (again: no-op)."""

    def __init__(self, hooks, fn):
        self._hooks, self._fn = hooks, fn

    def remove(self):
        # By identity, one entry: the same function registered twice has two handles.
        for i, fn in enumerate(self._hooks):
            if fn is self._fn:
                del self._hooks[i]
                return


def run_grad_hooks(tensor, grad):
    """``grad`` after each of ``tensor``'s ``register_hook`` functions, in registration order;
    a hook that returns something replaces the gradient the next hook (and backward) sees."""
    for hook in list(tensor._grad_hooks):  # a copy: a hook may remove itself
        replaced = hook(grad)
        if replaced is not None:
            if isinstance(replaced, Tensor):
                replaced = replaced.data
            if tuple(replaced.shape) != tuple(grad.shape):
                raise RuntimeError(f"register_hook: the hook {getattr(hook, '__name__', hook)} "
                                   f"returned a gradient of shape {tuple(replaced.shape)}, "
                                   f"expected {tuple(grad.shape)}")
            grad = replaced if replaced.dtype == grad.dtype else replaced.astype(grad.dtype)
    return grad


def run_post_accumulate_grad_hooks(tensor):
    """Call each ``register_post_accumulate_grad_hook`` function of the leaf with the leaf."""
    for hook in list(tensor._post_accumulate_grad_hooks):
        hook(tensor)


from engine.tensor import Tensor  # noqa: E402  (tensor.py imports this module; import last)
