"""Tests of engine.optim: SGD and Adam against PyTorch's update rules (MATH F7), written out here.

The references below are transcribed from the algorithm boxes of PyTorch's documentation
(torch.optim.SGD and torch.optim.Adam), in float64, one parameter at a time. Each optimiser runs
three steps with gradients that change from step to step, and every step is compared to the
reference to 1e-12. PyTorch itself is not needed.
"""
import copy

import numpy as np
import pytest

import engine
import engine.functional as F
from engine import Tensor, data, nn, optim

TOL = dict(rtol=1e-12, atol=1e-12)

THETA0 = [np.array([1.0, -2.0, 0.5]), np.array([[0.3, -0.7], [1.5, 2.0]])]  # two parameters
# GRADS[t][i]: gradient of parameter i at step t + 1, changing sign and size from step to step.
GRADS = [
    [np.array([0.5, -1.0, 2.0]), np.array([[1.0, 0.0], [-0.5, 0.25]])],
    [np.array([-0.3, 0.8, 1.0]), np.array([[0.2, -1.5], [0.5, 0.75]])],
    [np.array([1.2, 0.1, -2.0]), np.array([[-1.0, 0.4], [0.0, -0.3]])],
]


def sgd_reference(theta0, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    """torch.optim.SGD, per parameter (the buffer starts at the parameter's first gradient):

        g <- g + weight_decay * theta                       if weight_decay != 0
        b <- g  (first step),  b <- momentum b + (1 - dampening) g  (later)   if momentum != 0
        g <- g + momentum b  if nesterov  else  g <- b                      if momentum != 0
        theta <- theta - lr g
    Returns theta after each step. A gradient of None means "no gradient": the parameter is skipped.
    """
    theta, buf, history = [t.copy() for t in theta0], [None] * len(theta0), []
    for step_grads in grads:
        for i, g in enumerate(step_grads):
            if g is None:
                continue
            if weight_decay != 0:
                g = g + weight_decay * theta[i]
            if momentum != 0:
                buf[i] = g.copy() if buf[i] is None else momentum * buf[i] + (1 - dampening) * g
                g = g + momentum * buf[i] if nesterov else buf[i]
            theta[i] = theta[i] - lr * g
        history.append([t.copy() for t in theta])
    return history


def adam_reference(theta0, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    """torch.optim.Adam (amsgrad=False), per parameter, t counting that parameter's own steps:

        g <- g + weight_decay * theta                 if weight_decay != 0
        m <- beta1 m + (1 - beta1) g,   v <- beta2 v + (1 - beta2) g^2       (m_0 = v_0 = 0)
        m_hat = m / (1 - beta1^t),      v_hat = v / (1 - beta2^t)
        theta <- theta - lr m_hat / (sqrt(v_hat) + eps)
    """
    beta1, beta2 = betas
    theta = [t.copy() for t in theta0]
    m, v, t = [np.zeros_like(x) for x in theta0], [np.zeros_like(x) for x in theta0], [0] * len(theta0)
    history = []
    for step_grads in grads:
        for i, g in enumerate(step_grads):
            if g is None:
                continue
            if weight_decay != 0:
                g = g + weight_decay * theta[i]
            t[i] += 1
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g ** 2
            m_hat = m[i] / (1 - beta1 ** t[i])
            v_hat = v[i] / (1 - beta2 ** t[i])
            theta[i] = theta[i] - lr * m_hat / (np.sqrt(v_hat) + eps)
        history.append([x.copy() for x in theta])
    return history


def make_params(theta0=THETA0):
    return [nn.Parameter(t.copy()) for t in theta0]  # float64 arrays stay float64


def set_grads(params, step_grads):
    """Write this step's gradients into the parameters. From the second step on, into the *same*
    arrays in place, so an optimiser that kept a reference to last step's grad would be caught."""
    for p, g in zip(params, step_grads):
        if g is None:
            p.grad = None
        elif p.grad is None:
            p.grad = g.copy()
        else:
            p.grad[...] = g


def run_and_compare(opt, params, grads, expected):
    for step_grads, want in zip(grads, expected):
        set_grads(params, step_grads)
        data_before = [p.data for p in params]
        opt.step()
        for p, g, d, w in zip(params, step_grads, data_before, want):
            np.testing.assert_allclose(p.data, w, **TOL)
            assert p.data is d                                  # updated in place
            if g is not None:
                np.testing.assert_array_equal(p.grad, g)        # the gradient is not modified


SGD_CASES = {
    "plain": dict(lr=0.1),
    "weight_decay": dict(lr=0.1, weight_decay=0.01),
    "momentum": dict(lr=0.1, momentum=0.9),
    "momentum_dampening_weight_decay": dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.1),
    "nesterov": dict(lr=0.1, momentum=0.9, nesterov=True),
    "nesterov_weight_decay": dict(lr=0.02, momentum=0.5, weight_decay=0.2, nesterov=True),
}

ADAM_CASES = {
    "defaults": dict(),
    "all_options": dict(lr=0.1, betas=(0.8, 0.95), eps=1e-3, weight_decay=0.1),
    "weight_decay": dict(lr=0.01, weight_decay=0.5),
}


# ---------------------------------------------------------------- SGD

def test_sgd_momentum_by_hand():
    """theta = 1, lr 0.1, momentum 0.9, gradients 1, 2, 3:
    b = 1 -> theta 0.9;  b = 0.9 + 2 = 2.9 -> theta 0.61;  b = 2.61 + 3 = 5.61 -> theta 0.049."""
    p = nn.Parameter(np.array([1.0]))
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    for g, want in zip((1.0, 2.0, 3.0), (0.9, 0.61, 0.049)):
        p.grad = np.array([g])
        opt.step()
        np.testing.assert_allclose(p.data, [want], **TOL)


@pytest.mark.parametrize("case", SGD_CASES)
def test_sgd_matches_pytorch_rule(case):
    params = make_params()
    expected = sgd_reference(THETA0, GRADS, **SGD_CASES[case])
    run_and_compare(optim.SGD(params, **SGD_CASES[case]), params, GRADS, expected)


def test_sgd_nesterov_needs_momentum_and_no_dampening():
    with pytest.raises(ValueError):
        optim.SGD(make_params(), lr=0.1, nesterov=True)                 # momentum 0
    with pytest.raises(ValueError):
        optim.SGD(make_params(), lr=0.1, momentum=0.9, dampening=0.5, nesterov=True)


# ---------------------------------------------------------------- Adam

def test_adam_first_step_by_hand():
    """theta = 1, g = 0.5, lr 0.1: m = 0.05, v = 0.00025; m_hat = 0.5, v_hat = 0.25, sqrt 0.5;
    theta = 1 - 0.1 * 0.5 / (0.5 + 1e-8). (Adam's first step is about lr * sign(g).)"""
    p = nn.Parameter(np.array([1.0]))
    opt = optim.Adam([p], lr=0.1)
    p.grad = np.array([0.5])
    opt.step()
    np.testing.assert_allclose(p.data, [1 - 0.1 * 0.5 / (0.5 + 1e-8)], **TOL)


@pytest.mark.parametrize("scale", [1.0, 1e-3])
@pytest.mark.parametrize("case", ADAM_CASES)
def test_adam_matches_pytorch_rule(case, scale):
    """scale 1e-3 makes sqrt(v_hat) ~ 1e-3, the size of eps in "all_options", so where eps sits
    (outside the square root, after bias correction) is tested, not only the leading term."""
    grads = [[g * scale for g in step] for step in GRADS]
    params = make_params()
    expected = adam_reference(THETA0, grads, **ADAM_CASES[case])
    run_and_compare(optim.Adam(params, **ADAM_CASES[case]), params, grads, expected)


@pytest.mark.parametrize("betas", [(1.0, 0.999), (0.9, 1.0), (-0.1, 0.999), (0.9, 1.5)])
def test_adam_rejects_betas_outside_0_1(betas):
    with pytest.raises(ValueError):
        optim.Adam(make_params(), betas=betas)


# ---------------------------------------------------------------- both

def test_optimiser_arguments_are_checked():
    with pytest.raises(ValueError):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError):
        optim.SGD(make_params(), lr=-0.1)
    with pytest.raises(ValueError):
        optim.Adam(make_params(), lr=-1e-3)
    with pytest.raises(ValueError):
        optim.Adam(make_params(), weight_decay=-0.1)


@pytest.mark.parametrize("make,reference", [
    (lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1),
     lambda g: sgd_reference(THETA0, g, lr=0.1, momentum=0.9, weight_decay=0.1)),
    (lambda ps: optim.Adam(ps, lr=0.1, weight_decay=0.1),
     lambda g: adam_reference(THETA0, g, lr=0.1, weight_decay=0.1)),
], ids=["sgd", "adam"])
def test_parameters_without_grad_are_skipped(make, reference):
    """Parameter 1 has no gradient at step 1: it does not move, gets no state (no weight decay,
    no momentum, no Adam step count), and from step 2 on starts its own history, as in PyTorch."""
    grads = [[GRADS[0][0], None], GRADS[1], GRADS[2]]
    params = make_params()
    opt = make(params)
    set_grads(params, grads[0])
    opt.step()
    np.testing.assert_array_equal(params[1].data, THETA0[1])
    assert params[1].grad is None
    expected = reference(grads)
    np.testing.assert_allclose(params[0].data, expected[0][0], **TOL)
    run_and_compare(opt, params, grads[1:], expected[1:])


@pytest.mark.parametrize("make", [
    lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.1),
    lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    lambda ps: optim.Adam(ps, lr=0.1, betas=(0.8, 0.9), weight_decay=0.1),
], ids=["sgd_momentum", "sgd_nesterov", "adam"])
def test_state_dict_round_trip_continues_identically(make):
    """Optimiser A takes two steps; B and C, fresh optimisers over copies of A's parameters, load
    A's state dict. All three then take the same third step and must land on the same values,
    which a fresh optimiser (no state) does not: the state is what is tested."""
    params_a = make_params()
    opt_a = make(params_a)
    for step_grads in GRADS[:2]:
        set_grads(params_a, step_grads)
        opt_a.step()
    state = opt_a.state_dict()
    snapshot = copy.deepcopy(state)

    runs = []
    for load in (True, True, False):  # B, C (both from the same dict), and a fresh one
        params = [nn.Parameter(np.array(p.data)) for p in params_a]
        opt = make(params)
        if load:
            opt.load_state_dict(state)
        runs.append((params, opt))
    for params, opt in [(params_a, opt_a)] + runs:
        set_grads(params, GRADS[2])
        opt.step()

    (params_b, _), (params_c, _), (params_fresh, _) = runs
    for a, b, c in zip(params_a, params_b, params_c):
        np.testing.assert_array_equal(b.data, a.data)
        np.testing.assert_array_equal(c.data, a.data)  # fails if B and C shared the dict's buffers
    assert not np.array_equal(params_fresh[0].data, params_a[0].data)
    # The dict is a snapshot: neither A's later step nor the loaders' steps changed it.
    for s, s0 in zip(state["state"], snapshot["state"]):
        assert s.keys() == s0.keys()
        for key in s:
            np.testing.assert_array_equal(s[key], s0[key])


def test_load_state_dict_rejects_state_for_other_parameters():
    state = optim.SGD(make_params(), lr=0.1, momentum=0.9).state_dict()  # two parameters
    with pytest.raises(ValueError):
        optim.SGD(make_params(THETA0[:1]), lr=0.1, momentum=0.9).load_state_dict(state)


def test_zero_grad_drops_every_gradient():
    params = make_params()
    set_grads(params, GRADS[0])
    opt = optim.Adam(params)
    opt.zero_grad()
    assert all(p.grad is None for p in params)
    opt.step()  # nothing to do: no parameter moves
    for p, t in zip(params, THETA0):
        np.testing.assert_array_equal(p.data, t)


@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1),
                                  lambda ps: optim.Adam(ps, weight_decay=0.1)], ids=["sgd", "adam"])
def test_float32_parameters_stay_float32(make):
    params = [nn.Parameter(t.astype(np.float32)) for t in THETA0]
    opt = make(params)
    for step_grads in GRADS:
        set_grads(params, [g.astype(np.float32) for g in step_grads])
        opt.step()
    assert all(p.dtype == np.float32 for p in params)


# ---------------------------------------------------------------- end to end (MATH E3)

def test_mlp_trained_with_sgd_on_e3():
    """MATH E3 recipe: 80/20 split, SGD lr 0.01, batch 10, 100 epochs, a sigmoid output unit and
    binary cross-entropy (here after a small hidden layer, Linear(2, 8) -> Tanh).

    Threshold. The two classes are N((-1,-1), I) and N((1,1), I): the best possible rule is
    x1 + x2 > 0, whose error is Phi(-sqrt(2)) = 7.9 %, so ~92 % is the ceiling in expectation;
    on this seed's data that rule scores 86.25 % on the 80 training points and 100 % on the 20
    test points (computed below). Chance is 50 %. We ask for >= 80 % on train and >= 90 % on test
    (at most 2 of 20 wrong) and for the loss to have fallen well below log 2 = 0.693 (the loss of
    always answering 1/2): a model that had not learnt the direction x1 + x2 cannot pass, one that
    has passes with margin (it reaches ~87 % / 100 % for the seeds tried).
    """
    X, y, X_test, y_test = data.binary_classification_e3(seed=0)
    bayes_train = np.mean((X.sum(axis=1) > 0) == (y[:, 0] > 0.5))
    bayes_test = np.mean((X_test.sum(axis=1) > 0) == (y_test[:, 0] > 0.5))
    assert (bayes_train, bayes_test) == (0.8625, 1.0)  # the numbers the docstring quotes

    engine.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1), nn.Sigmoid())
    opt = optim.SGD(model.parameters(), lr=0.01)
    loader = data.DataLoader(X, y, batch_size=10, shuffle=True, seed=0)
    losses = []
    for epoch in range(100):
        total = 0.0
        for xb, yb in loader:
            opt.zero_grad()
            loss = F.binary_cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(xb)
        losses.append(total / len(X))

    def accuracy(X_, y_):
        with engine.no_grad():
            return np.mean((np.asarray(model(Tensor(X_)).data) > 0.5) == (y_ > 0.5))

    assert losses[-1] < 0.35 < losses[0]
    assert accuracy(X, y) >= 0.80
    assert accuracy(X_test, y_test) >= 0.90
