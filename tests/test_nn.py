"""Tests of engine.nn: Linear, activations, Flatten, Dropout, Sequential, Module, init, clip_grad_norm_.

Every expected value is computed here, by hand or in plain NumPy (float64), from the formula the
layer implements (MATH F1, F2, F6, A8) -- never by calling the engine a second time. PyTorch is not
needed: where a behaviour copies PyTorch's (initialisation bounds, the 1e-6 in gradient clipping),
the PyTorch rule is written out in the test.
"""
import re

import numpy as np
import pytest

import engine
from engine import Tensor, nn

TOL = dict(rtol=1e-12, atol=1e-12)  # float64 throughout: only rounding separates engine and reference


def arr(t):
    """The NumPy array inside a Tensor (or Parameter)."""
    return np.asarray(t.data)


def mlp(dtype=np.float64):
    """Linear(3, 4) -> ReLU -> Linear(4, 2): a small model with two named layers (0 and 2)."""
    return nn.Sequential(nn.Linear(3, 4, dtype=dtype), nn.ReLU(), nn.Linear(4, 2, dtype=dtype))


def reference_mlp(state, x):
    """What ``mlp()`` computes, from its state dict, in NumPy: relu(x W0^T + b0) W2^T + b2 (MATH F2)."""
    h = np.maximum(x @ state["0.weight"].T + state["0.bias"], 0)  # (N, 4)
    return h @ state["2.weight"].T + state["2.bias"]               # (N, 2)


# ---------------------------------------------------------------- Linear: forward (MATH F1)

def test_linear_weight_shape_is_out_by_in():
    layer = nn.Linear(5, 3)
    assert layer.weight.shape == (3, 5)  # (out_features, in_features), as in PyTorch
    assert layer.bias.shape == (3,)
    assert layer.weight.requires_grad and layer.bias.requires_grad
    assert layer.weight.dtype == np.float32  # PyTorch's default dtype
    assert nn.Linear(5, 3, dtype=np.float64).weight.dtype == np.float64


def test_linear_forward_by_hand():
    """One sample, numbers small enough to check on paper: z = W x + b."""
    layer = nn.Linear(2, 3, dtype=np.float64)
    layer.load_state_dict({"weight": np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),
                           "bias": np.array([0.5, -1.0, 2.0])})
    z = layer(Tensor(np.array([[1.0, -1.0]])))
    # W x = (1 - 2, 3 - 4, 5 - 6) = (-1, -1, -1); + b = (-0.5, -2, 1)
    np.testing.assert_array_equal(arr(z), [[-0.5, -2.0, 1.0]])


def test_linear_forward_equals_x_WT_plus_b():
    rng = np.random.default_rng(0)
    layer = nn.Linear(4, 3, dtype=np.float64)
    x = rng.standard_normal((6, 4))                                   # (N, in)
    expected = x @ arr(layer.weight).T + arr(layer.bias)              # (N, out)
    np.testing.assert_allclose(arr(layer(Tensor(x))), expected, **TOL)
    # Leading batch axes, as in PyTorch: (B, T, in) -> (B, T, out).
    x3 = rng.standard_normal((2, 5, 4))
    np.testing.assert_allclose(arr(layer(Tensor(x3))), x3 @ arr(layer.weight).T + arr(layer.bias), **TOL)


def test_linear_without_bias():
    layer = nn.Linear(4, 3, bias=False, dtype=np.float64)
    assert layer.bias is None
    assert [name for name, _ in layer.named_parameters()] == ["weight"]
    x = np.random.default_rng(1).standard_normal((2, 4))
    np.testing.assert_allclose(arr(layer(Tensor(x))), x @ arr(layer.weight).T, **TOL)


def test_linear_rejects_bad_sizes_and_wrong_input_width():
    with pytest.raises(ValueError):
        nn.Linear(0, 3)
    with pytest.raises(ValueError):
        nn.Linear(3, 0)
    with pytest.raises(ValueError, match="expects 4"):
        nn.Linear(4, 3)(Tensor(np.zeros((2, 5), dtype=np.float32)))


# ---------------------------------------------------------------- Linear: gradients (MATH F6)

def test_linear_gradients_equal_hand_formulas():
    """L = sum(z * G) makes dL/dz = G, so (MATH F6): dW = G^T x, db = sum_n G_n, dx = G W."""
    rng = np.random.default_rng(2)
    layer = nn.Linear(3, 4, dtype=np.float64)
    x_np, G = rng.standard_normal((5, 3)), rng.standard_normal((5, 4))  # (N, in), (N, out)
    x = Tensor(x_np, requires_grad=True)
    (layer(x) * Tensor(G)).sum().backward()
    W = arr(layer.weight)
    np.testing.assert_allclose(layer.weight.grad, G.T @ x_np, **TOL)   # (out, in)
    np.testing.assert_allclose(layer.bias.grad, G.sum(axis=0), **TOL)  # (out,)
    np.testing.assert_allclose(x.grad, G @ W, **TOL)                   # (N, in)


def test_linear_gradients_with_leading_batch_axes():
    """With x (B, T, in) every (b, t) row is one sample: dW sums over all B*T of them."""
    rng = np.random.default_rng(3)
    layer = nn.Linear(3, 2, dtype=np.float64)
    x_np, G = rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 5, 2))
    (layer(Tensor(x_np)) * Tensor(G)).sum().backward()
    np.testing.assert_allclose(layer.weight.grad, G.reshape(-1, 2).T @ x_np.reshape(-1, 3), **TOL)
    np.testing.assert_allclose(layer.bias.grad, G.sum(axis=(0, 1)), **TOL)


# ---------------------------------------------------------------- initialisation

@pytest.mark.parametrize("in_features,out_features", [(4, 1000), (1000, 4)])
def test_linear_init_is_uniform_with_pytorch_bound(in_features, out_features):
    """PyTorch: weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)). The two shapes separate fan-in from
    fan-out: (4, 1000) has bound 0.5, (1000, 4) bound 0.0316; swapping them fails both."""
    engine.manual_seed(0)
    layer = nn.Linear(in_features, out_features, dtype=np.float64)
    bound = 1 / np.sqrt(in_features)
    for values in (arr(layer.weight).ravel(), arr(layer.bias)):
        assert np.abs(values).max() <= bound
        if values.size >= 1000:
            # The bound is reached, not just respected: n draws all stay below 0.95 * bound with
            # probability 0.975^n < 1e-10 for n >= 1000 (and the seed is fixed anyway).
            assert values.max() > 0.95 * bound and values.min() < -0.95 * bound
    w = arr(layer.weight).ravel()  # 4000 draws: mean 0 +- 0.005 (1 s.d.), variance bound^2 / 3
    assert abs(w.mean()) < 0.03 * bound
    np.testing.assert_allclose(w.var(), bound ** 2 / 3, rtol=0.1)


def test_manual_seed_reproduces_initialisation():
    engine.manual_seed(7)
    a = mlp()
    engine.manual_seed(7)
    b = mlp()
    engine.manual_seed(8)
    c = mlp()
    for name, value in a.state_dict().items():
        np.testing.assert_array_equal(value, b.state_dict()[name])
        assert not np.array_equal(value, c.state_dict()[name]), name
    # The generator advances: two layers made one after the other differ.
    assert not np.array_equal(a.state_dict()["0.weight"][:, :3], a.state_dict()["2.weight"][:3, :3])


def test_init_uniform_fills_in_place():
    t = nn.Parameter(np.zeros((50, 40)))
    before = t.data
    out = nn.init.uniform_(t, 2.0, 3.0)
    assert out is t and t.data is before
    assert 2.0 <= arr(t).min() and arr(t).max() < 3.0


# ---------------------------------------------------------------- activations, Flatten, Dropout

@pytest.mark.parametrize("layer,reference", [
    (nn.ReLU(), lambda x: np.maximum(x, 0)),
    (nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    (nn.Tanh(), np.tanh),
])
def test_activations(layer, reference):
    x = np.linspace(-4, 4, 17).reshape(1, 17)  # includes 0 exactly
    np.testing.assert_allclose(arr(layer(Tensor(x))), reference(x), **TOL)
    assert layer.parameters() == []


def test_flatten_keeps_batch_axis_and_passes_gradient_back():
    x_np = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)
    x = Tensor(x_np, requires_grad=True)
    y = nn.Flatten()(x)
    assert y.shape == (2, 60)
    np.testing.assert_array_equal(arr(y), x_np.reshape(2, 60))
    (y * Tensor(np.arange(120.0).reshape(2, 60))).sum().backward()
    np.testing.assert_array_equal(x.grad, np.arange(120.0).reshape(2, 3, 4, 5))
    assert nn.Flatten(start_dim=2)(Tensor(x_np)).shape == (2, 3, 20)


def test_dropout_in_training_zeroes_and_rescales():
    engine.manual_seed(0)
    x = Tensor(np.ones((100, 100)), requires_grad=True)
    y = nn.Dropout(p=0.25)(x)
    values = arr(y)
    kept = values != 0
    np.testing.assert_allclose(values[kept], 1 / 0.75, **TOL)  # inverted dropout: scale 1/(1-p)
    assert abs(1 - kept.mean() - 0.25) < 0.02                  # 10,000 draws: s.d. 0.0043
    y.sum().backward()
    np.testing.assert_allclose(x.grad, values, **TOL)          # dy/dx is the same mask
    np.testing.assert_array_equal(arr(nn.Dropout(p=0.0)(x)), 1.0)
    np.testing.assert_array_equal(arr(nn.Dropout(p=1.0)(x)), 0.0)
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError):
            nn.Dropout(p)


def test_dropout_is_identity_in_eval():
    x_np = np.random.default_rng(4).standard_normal((20, 30))
    layer = nn.Dropout(p=0.9).eval()
    np.testing.assert_array_equal(arr(layer(Tensor(x_np))), x_np)


# ---------------------------------------------------------------- Module

class Net(nn.Module):
    """A custom module: an own parameter, a Linear, a nested Sequential (assignment order matters)."""

    def __init__(self):
        self.encoder = nn.Linear(3, 4)
        self.scale = nn.Parameter(np.ones(4, dtype=np.float32))
        self.head = nn.Sequential(nn.Tanh(), nn.Sequential(nn.Dropout(0.5), nn.Linear(4, 2, bias=False)))
        self.not_a_parameter = Tensor(np.zeros(3))  # a plain Tensor is not a parameter

    def forward(self, x):
        return self.head(self.encoder(x) * self.scale)


def test_named_parameters_order_and_names_nested():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Sequential(nn.Linear(3, 4), nn.Tanh()), nn.Linear(4, 1))
    names = [name for name, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "2.0.weight", "2.0.bias", "3.weight", "3.bias"]
    params = dict(model.named_parameters())
    assert params["2.0.weight"] is model[2][0].weight and params["3.bias"] is model[3].bias
    assert [id(p) for p in model.parameters()] == [id(p) for _, p in model.named_parameters()]
    assert list(model.state_dict()) == names


def test_named_parameters_custom_module():
    model = Net()
    # Own parameters first, then each child in assignment order (as PyTorch does).
    assert [name for name, _ in model.named_parameters()] == [
        "scale", "encoder.weight", "encoder.bias", "head.1.1.weight"]
    assert model.named_parameters()[0][1] is model.scale
    assert [type(m).__name__ for m in model.modules()] == [
        "Net", "Linear", "Sequential", "Tanh", "Sequential", "Dropout", "Linear"]


def test_call_runs_forward():
    engine.manual_seed(0)
    model = mlp()
    x = np.random.default_rng(5).standard_normal((7, 3))
    np.testing.assert_allclose(arr(model(Tensor(x))), reference_mlp(model.state_dict(), x), **TOL)
    with pytest.raises(NotImplementedError):
        nn.Module()(Tensor(x))


def test_state_dict_is_a_copy():
    model = mlp()
    state = model.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    state["0.weight"][...] = 123.0                 # changing the dict leaves the model alone
    assert not np.any(arr(model[0].weight) == 123.0)
    model[0].bias.data[...] = -7.0                 # and changing the model leaves an old dict alone
    assert not np.any(model.state_dict()["0.bias"] != -7.0)
    assert not np.any(state["0.bias"] == -7.0)


def test_state_dict_round_trip_gives_identical_outputs():
    x = Tensor(np.random.default_rng(6).standard_normal((5, 3)))
    engine.manual_seed(0)
    source = mlp()
    engine.manual_seed(1)
    target = mlp()
    assert not np.array_equal(arr(source(x)), arr(target(x)))  # different before: the test can fail
    state = source.state_dict()
    target.load_state_dict(state)
    np.testing.assert_array_equal(arr(target(x)), arr(source(x)))
    state["2.bias"][...] += 1.0                     # loading copies: the dict stays independent
    np.testing.assert_array_equal(arr(target(x)), arr(source(x)))
    assert target[0].weight is not source[0].weight


def test_load_state_dict_accepts_tensors():
    engine.manual_seed(0)
    source = mlp()
    engine.manual_seed(1)
    target = mlp()
    target.load_state_dict(dict(source.named_parameters()))
    for name, value in source.state_dict().items():
        np.testing.assert_array_equal(target.state_dict()[name], value)


@pytest.mark.parametrize("change,error,key", [
    (lambda s: s.pop("2.bias"), KeyError, "2.bias"),                                   # missing
    (lambda s: s.__setitem__("4.weight", np.zeros((2, 2))), KeyError, "4.weight"),    # unexpected
    (lambda s: s.__setitem__("0.weight", np.zeros((3, 4))), ValueError, "0.weight"),  # transposed shape
])
def test_load_state_dict_rejects_and_names_the_key(change, error, key):
    engine.manual_seed(0)
    model = mlp()
    before = model.state_dict()
    state = {name: np.zeros_like(value) for name, value in before.items()}
    change(state)
    with pytest.raises(error, match=re.escape(key)):
        model.load_state_dict(state)
    if error is KeyError:  # key errors are found before anything is copied: the model is untouched
        for name, value in before.items():
            np.testing.assert_array_equal(model.state_dict()[name], value)


def test_zero_grad_drops_every_gradient():
    model = Net()
    model(Tensor(np.ones((2, 3), dtype=np.float32))).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_train_and_eval_reach_every_submodule():
    model = Net()
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    x = Tensor(np.random.default_rng(7).standard_normal((4, 3)).astype(np.float32))
    np.testing.assert_array_equal(arr(model(x)), arr(model(x)))  # the nested Dropout is off
    assert model.train() is model
    assert all(m.training for m in model.modules())
    model.train(False)
    assert not any(m.training for m in model.modules())


# ---------------------------------------------------------------- Sequential

def test_sequential_indexing_len_iter():
    layers = [nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.Sigmoid()]
    model = nn.Sequential(*layers)
    assert len(model) == 4
    assert list(model) == layers
    assert model[0] is layers[0] and model[-1] is layers[-1]
    with pytest.raises(IndexError):
        model[4]


def test_sequential_slices_share_layers_and_parameters():
    engine.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4, dtype=np.float64), nn.ReLU(),
                          nn.Linear(4, 4, dtype=np.float64), nn.Tanh(), nn.Linear(4, 2, dtype=np.float64))
    first, second = model[:2], model[2:]
    assert isinstance(first, nn.Sequential) and isinstance(second, nn.Sequential)
    assert len(first) == 2 and len(second) == 3
    assert second[0] is model[2] and list(model[::2]) == [model[0], model[2], model[4]]
    ids = {id(p) for p in model.parameters()}
    assert {id(p) for p in first.parameters()} | {id(p) for p in second.parameters()} == ids
    # Cutting the model into stages changes nothing: stage 2 after stage 1 is the model.
    x = Tensor(np.random.default_rng(8).standard_normal((5, 3)))
    np.testing.assert_array_equal(arr(second(first(x))), arr(model(x)))
    # A change made through a stage is a change of the model (shared, not copied).
    before = arr(model(x)).copy()
    second[0].weight.data[...] = 0.0
    assert not np.array_equal(arr(model(x)), before)


def test_sequential_rejects_non_modules():
    with pytest.raises(TypeError):
        nn.Sequential(nn.Linear(2, 2), np.tanh)
    with pytest.raises(TypeError):
        nn.Sequential([nn.Linear(2, 2), nn.ReLU()])  # a list is not unpacked


def test_empty_sequential_is_identity():
    x = Tensor(np.arange(3.0))
    assert nn.Sequential()(x) is x


# ---------------------------------------------------------------- clip_grad_norm_ (MATH A8)

def params_with_grads(*grads):
    out = []
    for g in grads:
        p = nn.Parameter(np.zeros_like(g))
        p.grad = None if g is None else np.array(g, dtype=np.float64)
        out.append(p)
    return out


@pytest.mark.parametrize("norm_type,total", [
    (2.0, 13.0),            # sqrt(3^2 + 4^2 + 12^2) = sqrt(169)
    (1.0, 19.0),            # 3 + 4 + 12
    (float("inf"), 12.0),   # max |g|
])
def test_clip_grad_norm_scales_by_pytorch_coefficient(norm_type, total):
    params = params_with_grads(np.array([3.0, -4.0]), np.array([[-12.0]]))
    params.append(nn.Parameter(np.ones(2)))  # grad None: skipped, stays None
    before = [p.grad.copy() for p in params[:2]]
    max_norm = 2.0
    returned = nn.utils.clip_grad_norm_(params, max_norm, norm_type=norm_type)
    assert isinstance(returned, Tensor)
    np.testing.assert_allclose(returned.item(), total, **TOL)  # the norm before clipping
    # PyTorch: coef = max_norm / (total + 1e-6), clamped to <= 1. The 1e-6 changes coef by a
    # relative 1e-7, far above the 1e-12 tolerance, so leaving it out fails this test.
    coef = max_norm / (total + 1e-6)
    for p, g in zip(params, before):
        np.testing.assert_allclose(p.grad, g * coef, **TOL)
    assert params[2].grad is None


def test_clip_grad_norm_leaves_small_gradients_alone():
    params = params_with_grads(np.array([3.0, -4.0]), np.array([[-12.0]]))
    before = [p.grad.copy() for p in params]
    returned = nn.utils.clip_grad_norm_(params, max_norm=100.0)
    np.testing.assert_allclose(returned.item(), 13.0, **TOL)
    for p, g in zip(params, before):
        np.testing.assert_array_equal(p.grad, g)


def test_clip_grad_norm_float32_in_place_and_errors():
    p = nn.Parameter(np.zeros(4, dtype=np.float32))
    p.grad = np.full(4, 10.0, dtype=np.float32)  # norm 20
    grad = p.grad
    nn.utils.clip_grad_norm_([p], 1.0)
    assert p.grad is grad and p.grad.dtype == np.float32  # scaled in place, dtype kept
    np.testing.assert_allclose(np.linalg.norm(p.grad.astype(np.float64)), 1.0, rtol=1e-6)
    with pytest.raises(ValueError):
        nn.utils.clip_grad_norm_([p], -1.0)
    assert nn.utils.clip_grad_norm_([nn.Parameter(np.ones(2))], 1.0).item() == 0.0  # no grads at all


# ---------------------------------------------------------------- ModuleList

class Tower(nn.Module):
    """A custom module holding its layers in a ModuleList, as a transformer holds its blocks."""

    def __init__(self, widths):
        self.layers = nn.ModuleList(nn.Linear(a, b, dtype=np.float64) for a, b in zip(widths, widths[1:]))
        self.head = nn.Linear(widths[-1], 1, dtype=np.float64)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x).relu()
        return self.head(x)


def test_module_list_parameters_are_found_and_named():
    model = Tower([3, 4, 5])
    names = [name for name, _ in model.named_parameters()]
    assert names == ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias",
                     "head.weight", "head.bias"]
    assert list(model.state_dict()) == names
    assert len(model.parameters()) == 6
    assert model.layers in model.modules() and model.layers[1] in model.modules()
    model.eval()
    assert not model.layers[0].training


def test_module_list_is_a_list():
    a, b, c = nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 3)
    layers = nn.ModuleList([a])
    assert layers.append(b) is layers and layers.extend([c]) is layers
    assert len(layers) == 3 and list(layers) == [a, b, c]
    assert layers[0] is a and layers[-1] is c
    assert isinstance(layers[1:], nn.ModuleList) and list(layers[1:]) == [b, c]
    assert [name for name, _ in layers[1:].named_children()] == ["0", "1"]  # renumbered
    assert len(nn.ModuleList()) == 0
    with pytest.raises(IndexError):
        layers[3]
    with pytest.raises(TypeError, match="expected Modules"):
        layers.append(np.tanh)
    with pytest.raises(NotImplementedError):
        layers(Tensor(np.ones(2)))                 # no forward: the owner iterates


def test_module_list_moves_with_to_and_round_trips_state_dict():
    model = Tower([2, 3])
    x = Tensor(np.random.default_rng(1).standard_normal((4, 2)))
    model(x).sum().backward()
    assert model.to("cpu") is model and model.layers[0].weight.device == "cpu"
    other = Tower([2, 3])
    other.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(arr(other(x)), arr(model(x)))


@pytest.mark.parametrize("container", [list, tuple])
def test_a_plain_list_of_modules_as_an_attribute_is_refused(container):
    class Broken(nn.Module):
        def __init__(self):
            self.layers = container([nn.Linear(2, 2), nn.Linear(2, 2)])

    with pytest.raises(TypeError, match="ModuleList"):
        Broken()
    module = nn.Module()
    module.sizes = container([1, 2])              # a list of anything else is fine
    module.nothing = container()
    assert module.parameters() == []
