"""Reverse-mode automatic differentiation: the graph, the chain rule, and grad mode.

Every differentiable op is a :class:`Function` with a ``forward`` on arrays and a
``backward`` that maps the gradient of the op's output to the gradients of its
inputs (its local derivative times the incoming gradient). ``Function.apply``
runs ``forward`` and, when a gradient is needed, links the output tensor to the
op and its input tensors: that link is the graph.

:func:`backward` walks the graph once, from the output back to the leaves, in a
topological order, and applies the chain rule (MATH F6):

    dL/dx = sum over every op f that used x of  (dL/df) * (df/dx)

The *sum* matters: in ``b = a + a; c = b + b`` the tensor ``a`` reaches ``c``
along four paths, and its gradient is the sum of all four (dc/da = 4). A naive
recursive walk that visits ``b`` once per use would push ``b``'s gradient down
before it is complete; a topological order finishes every node's gradient
before it is used. The walk is iterative, so a chain of 10,000 ops works.
"""
import threading

from engine import backend
from engine.accumulate_grad import accumulate_grad

_grad_mode = threading.local()  # per thread: in-process "ranks" run on threads


def is_grad_enabled():
    """True unless inside a ``no_grad()`` block (of this thread)."""
    return getattr(_grad_mode, "enabled", True)


class _GradMode:
    """Context manager (and decorator) that sets grad mode for its block."""

    def __init__(self, enabled):
        self.enabled = enabled

    def __enter__(self):
        self.previous = is_grad_enabled()
        _grad_mode.enabled = self.enabled

    def __exit__(self, *exc):
        _grad_mode.enabled = self.previous

    def __call__(self, fn):
        def wrapper(*args, **kwargs):
            with _GradMode(self.enabled):
                return fn(*args, **kwargs)
        wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
        return wrapper


def no_grad(fn=None):
    """Ops inside ``with no_grad():`` build no graph (evaluation, optimiser updates).
    Also a decorator, with or without parentheses."""
    return _GradMode(False)(fn) if callable(fn) else _GradMode(False)


def enable_grad(fn=None):
    """Turn graph building back on inside a ``no_grad()`` block (or decorate a function)."""
    return _GradMode(True)(fn) if callable(fn) else _GradMode(True)


class Function:
    """One differentiable op.

    Subclasses implement ``forward(*arrays, **options) -> array`` and
    ``backward(grad_output) -> tuple`` with one gradient (or None) per input
    array, each the shape of its input. ``forward`` may keep what ``backward``
    needs on ``self`` (``self.save_for_backward(...)`` / ``self.saved``).
    """

    __slots__ = ("inputs", "saved", "freed", "options")

    def save_for_backward(self, *arrays):
        self.saved = arrays

    def forward(self, *arrays, **options):
        raise NotImplementedError

    def backward(self, grad_output):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **options):
        """Run the op on tensors; record it in the graph if a gradient is needed."""
        if len(inputs) > 1:
            kind = type(inputs[0].data)  # same array type: same device (the cheap test first)
            if any(type(t.data) is not kind for t in inputs) and \
                    len({backend.device_of(t.data) for t in inputs}) > 1:
                raise ValueError(f"{cls.__name__}: tensors are on different devices: "
                                 f"{[backend.device_of(t.data) for t in inputs]}")
        fn = cls()
        fn.saved, fn.freed, fn.options = (), False, options
        data = fn.forward(*[t.data for t in inputs], **options)
        out = Tensor._wrap(data)
        requires_grad = (is_grad_enabled() and any(t.requires_grad for t in inputs)
                         and out.data.dtype.kind in "fc")  # no gradient through integers
        out.requires_grad = requires_grad
        if requires_grad:
            fn.inputs = inputs
            out._ctx = fn
        return out


def topological_order(root):
    """The nodes that lead to ``root``, ``root`` first, every node before its inputs.

    Iterative depth-first search: a node is emitted after all its inputs (post-order),
    and the reversed list is a valid order for the chain rule. Of a node's inputs, the
    leaves are explored last, so that in the reversed list they come right after the op
    that uses them: an MLP's last layer's weights get their gradients first, while the
    earlier layers are still to be computed (the gradient hooks rely on this).
    """
    post_order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            post_order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if node._ctx is not None:
            inputs = [t for t in node._ctx.inputs if t.requires_grad and id(t) not in visited]
            stack.extend((t, False) for t in inputs if t._ctx is None)        # popped last
            stack.extend((t, False) for t in reversed(inputs) if t._ctx is not None)
    post_order.reverse()
    return post_order


def backward(root, grad=None, retain_graph=False):
    """Accumulate d(root)/d(leaf) into ``leaf.grad`` for every leaf that requires grad.

    MATH F6: each op's ``backward`` multiplies the gradient arriving at its
    output by its local derivative; gradients arriving at a tensor from several
    ops are summed. The graph's saved arrays are freed afterwards unless
    ``retain_graph`` (a second backward through a freed graph is an error).
    Hooks (engine/hooks.py) are called as each tensor's gradient becomes complete.
    """
    grads = {id(root): _initial_grad(root, grad)}  # dL/d(node), complete once its users ran
    for node in topological_order(root):
        g = grads.pop(id(node), None)
        if g is None:
            continue
        if node._grad_hooks:                        # register_hook: may replace g
            g = run_grad_hooks(node, g)
        if node._ctx is None or node._retains_grad:
            accumulate_grad(node, g)                # node.grad += g (engine/accumulate_grad.py)
            if node._post_accumulate_grad_hooks:
                run_post_accumulate_grad_hooks(node)
        fn = node._ctx
        if fn is None:
            continue
        if fn.freed:
            raise RuntimeError(f"backward: trying to backward through the graph a second time "
                               f"(at {type(fn).__name__}); its saved arrays were freed. "
                               f"Pass retain_graph=True to the first backward to keep them")
        input_grads = fn.backward(g)                # the op's local chain rule
        if not retain_graph:
            fn.saved, fn.freed = (), True
        for t, tg in zip(fn.inputs, input_grads):   # sum into the inputs' gradients
            if tg is None or not t.requires_grad:
                continue
            if tg.shape != t.shape:  # an op's backward must return its input's shape
                raise RuntimeError(f"{type(fn).__name__}.backward returned a gradient of shape "
                                   f"{tg.shape} for an input of shape {t.shape}")
            if tg.dtype != t.dtype:
                tg = tg.astype(t.dtype)
            grads[id(t)] = tg if id(t) not in grads else grads[id(t)] + tg
        # so that accumulate_grad sees only the reference in ``grads`` (it keeps unshared arrays)
        input_grads = tg = None


def _initial_grad(root, grad):
    """d(root)/d(root): ones for a scalar root, else the caller's ``grad`` (checked)."""
    if not root.requires_grad:
        raise RuntimeError("backward: this tensor does not require grad and has no graph "
                           "(create its leaves with requires_grad=True, outside no_grad())")
    xp = backend.array_module(root.data)
    if grad is None:
        if root.data.size != 1:
            raise RuntimeError(f"backward: grad can be implied only for a scalar output, "
                               f"this one has shape {root.shape}; pass grad= of that shape")
        return xp.ones_like(root.data)
    # not getattr(grad, "data"): a NumPy array's .data is a memoryview, CuPy's a MemoryPointer
    grad = xp.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=root.dtype)
    if grad.shape != root.shape:
        raise ValueError(f"backward: grad has shape {grad.shape}, output has shape {root.shape}")
    return grad


from engine.hooks import run_grad_hooks, run_post_accumulate_grad_hooks  # noqa: E402
from engine.tensor import Tensor  # noqa: E402  (Tensor uses this module; import last)
