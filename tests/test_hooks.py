"""Gradient hooks (engine/hooks.py): when they run, how often, and what replacing a gradient does.

PyTorch's semantics: ``register_hook(fn)`` gets the complete gradient of a tensor before it is
used and may replace it; ``register_post_accumulate_grad_hook(fn)`` runs after a leaf's .grad has
been accumulated. Expected values are derived by hand in the comments (MATH F6).
"""
import numpy as np
import pytest

from engine import Tensor, models, no_grad
import engine.functional as F


def leaf(value):
    return Tensor(np.array(value, dtype=np.float64), requires_grad=True)


# ---------------------------------------------------------------- post-accumulate hooks (leaves)

def test_post_accumulate_hook_runs_once_with_the_complete_gradient():
    """b = a + a; c = b * b: a reaches c along two paths through b; dc/da = 2b * 2 = 8a = 24.
    The hook must run once, after both paths have been summed, and see .grad already set."""
    a = leaf(3.0)
    seen = []
    a.register_post_accumulate_grad_hook(lambda t: seen.append(float(t.grad)))
    b = a + a
    c = b * b
    c.backward()
    assert seen == [24.0]


def test_post_accumulate_hook_sees_accumulation_across_backwards():
    a = leaf(2.0)
    seen = []
    a.register_post_accumulate_grad_hook(lambda t: seen.append(float(t.grad)))
    (a * 3.0).backward()
    (a * 3.0).backward()                 # .grad accumulates: 3, then 3 + 3
    assert seen == [3.0, 6.0]


def test_post_accumulate_hook_only_on_leaves_that_require_grad():
    a = leaf(1.0)
    with pytest.raises(RuntimeError, match="leaf"):
        (a * 2.0).register_post_accumulate_grad_hook(lambda t: None)
    with pytest.raises(RuntimeError, match="leaf"):
        Tensor(1.0).register_post_accumulate_grad_hook(lambda t: None)
    with pytest.raises(RuntimeError, match="require grad"):
        Tensor(1.0).register_hook(lambda g: None)


def test_remove_unregisters_only_its_hook():
    a = leaf(1.0)
    calls = []
    first = a.register_post_accumulate_grad_hook(lambda t: calls.append("first"))
    a.register_post_accumulate_grad_hook(lambda t: calls.append("second"))
    handle = a.register_hook(lambda g: calls.append("pre"))
    (a * 2.0).backward()
    assert calls == ["pre", "first", "second"]   # register_hook before accumulation, then in order
    first.remove()
    handle.remove()
    handle.remove()                               # a second remove does nothing
    calls.clear()
    (a * 2.0).backward()
    assert calls == ["second"]


def test_hooks_run_in_each_backward_with_retain_graph_and_under_no_grad():
    a = leaf(2.0)
    seen = []
    a.register_post_accumulate_grad_hook(lambda t: seen.append(float(t.grad)))
    c = a * a                                     # dc/da = 2a = 4
    c.backward(retain_graph=True)
    with no_grad():                               # the graph exists already: backward still runs
        c.backward()
    assert seen == [4.0, 8.0]


def test_mlp_hooks_fire_from_the_last_layer_to_the_first():
    """What data parallelism needs to overlap: a layer's gradients are complete (and its hooks
    run) before any earlier layer's, and weight and bias of one layer come together."""
    model = models.mlp((6, 5, 4, 3))             # Linear 0, ReLU, Linear 2, ReLU, Linear 4
    order = []
    for name, p in model.named_parameters():
        p.register_post_accumulate_grad_hook(lambda t, name=name: order.append(name))
    x = Tensor(np.random.default_rng(0).standard_normal((8, 6)).astype(np.float32))
    F.cross_entropy(model(x), np.arange(8) % 3).backward()
    layers = [name.split(".")[0] for name in order]
    assert layers == ["4", "4", "2", "2", "0", "0"], order
    assert sorted(order) == sorted(name for name, _ in model.named_parameters())


# ---------------------------------------------------------------- register_hook (any tensor)

def test_register_hook_on_an_intermediate_sees_its_complete_gradient():
    """c = b * b with b = a + a = 6: dc/db = 2b = 12, seen once even though b is used twice."""
    a = leaf(3.0)
    b = a + a
    seen = []
    b.register_hook(lambda g: seen.append(float(g)))
    (b * b).backward()
    assert seen == [12.0]
    assert a.grad == 24.0                         # unchanged: the hook returned None


def test_replacing_an_intermediate_gradient_follows_the_chain_rule():
    """c = b * b, b = a * x: the hook doubles dc/db = 2b, so dc/da = 2 * 2b * x and
    dc/dx = 2 * 2b * a. With a = 3, x = 2 (b = 6): 48 and 72 (instead of 24 and 36)."""
    a, x = leaf(3.0), leaf(2.0)
    b = a * x
    b.register_hook(lambda g: 2 * g)
    (b * b).backward()
    assert a.grad == 48.0 and x.grad == 72.0


def test_replacing_a_leaf_gradient_changes_what_is_accumulated():
    a = leaf([1.0, 2.0])
    a.register_hook(lambda g: Tensor(g * 10))     # a Tensor is accepted as well as an array
    seen = []
    a.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.copy()))
    (a * a).sum().backward()                      # 2a = [2, 4], times 10
    np.testing.assert_array_equal(a.grad, [20.0, 40.0])
    np.testing.assert_array_equal(seen[0], [20.0, 40.0])


def test_hooks_chain_in_registration_order():
    a = leaf(1.0)
    a.register_hook(lambda g: g + 1)
    a.register_hook(lambda g: g * 10)             # sees the first hook's output: (2 + 1) * 10
    (a * 2.0).backward()
    assert a.grad == 30.0


def test_a_hook_returning_the_wrong_shape_raises():
    a = leaf([1.0, 2.0])
    a.register_hook(lambda g: g[:1])
    with pytest.raises(RuntimeError, match="shape"):
        (a * a).sum().backward()


def test_retained_gradient_is_the_replaced_one():
    a = leaf(3.0)
    b = a * 2.0
    b.retain_grad()
    b.register_hook(lambda g: g * 5)
    b.backward()
    assert b.grad == 5.0 and a.grad == 10.0


def test_hook_that_keeps_the_gradient_gets_no_alias_of_grad():
    """A hook may keep the array it is given: .grad must then be a copy, not that array."""
    a = leaf([1.0, 2.0])
    kept = []
    a.register_hook(lambda g: kept.append(g))
    (a * 3.0).sum().backward()
    assert not np.shares_memory(a.grad, kept[0])
