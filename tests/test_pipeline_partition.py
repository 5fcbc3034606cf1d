"""Cutting a Sequential into pipeline stages (strategies/pipeline/partition.py): the min-max
contiguous partition against brute force, its tie rules, --balance parsing, stage bounds."""
import itertools
import random

import numpy as np
import pytest

from engine import Tensor, models, nn
from strategies.pipeline.partition import (balance_by_parameters, balance_by_time, check_stages,
                                           min_max_partition, parameter_counts, parse_balance,
                                           stage_bounds)


def brute_force(weights, stages, attached=None):
    """Every contiguous cut, ranked by (heaviest stage, ReLU-led stages, sum of squares, the
    cuts from the last back): what min_max_partition promises, found the slow way."""
    n, attached = len(weights), attached or [False] * len(weights)
    best = None
    for cuts in itertools.combinations(range(1, n), stages - 1):
        edges = [0, *cuts, n]
        loads = [sum(weights[a:b]) for a, b in zip(edges[:-1], edges[1:])]
        key = (max(loads), sum(bool(attached[c]) for c in cuts), sum(w * w for w in loads), cuts[::-1])
        if best is None or key < best[0]:
            best = key, [b - a for a, b in zip(edges[:-1], edges[1:])]
    return best[1]


def heaviest(weights, balance):
    return max(sum(weights[a:b]) for a, b in stage_bounds(balance))


def test_mlp7_is_thirteen_layers_seven_of_them_affine():
    model = models.build("mlp7")
    assert len(model) == 13 and sum(isinstance(m, nn.Linear) for m in model) == 7
    assert [m.weight.shape[0] for m in model if isinstance(m, nn.Linear)] == [128, 127, 126, 125, 124, 123, 10]
    assert sum(parameter_counts(model)) == 181_105


@pytest.mark.parametrize("stages, expected", [(1, [13]), (2, [2, 11]), (3, [2, 4, 7]), (4, [2, 4, 4, 3])])
def test_mlp7_by_parameters_is_the_brute_force_optimum(stages, expected):
    model = models.build("mlp7")
    counts = parameter_counts(model)
    balance = balance_by_parameters(model, stages)
    assert balance == expected and len(balance) == stages and sum(balance) == 13 and min(balance) >= 1
    optimum = min(heaviest(counts, [b - a for a, b in zip((0, *cuts), (*cuts, 13))])
                  for cuts in itertools.combinations(range(1, 13), stages - 1))
    assert heaviest(counts, balance) == optimum
    assert all(counts[start] > 0 for start, _ in stage_bounds(balance))    # no stage opens on a ReLU


def test_min_max_partition_equals_brute_force_on_random_weights():
    rng = random.Random(0)
    for _ in range(300):
        n = rng.randint(1, 8)
        weights = [rng.choice([0, 0, 1, 2, 3, 5, 8]) for _ in range(n)]
        attached = [w == 0 for w in weights]
        for stages in range(1, n + 1):
            assert min_max_partition(weights, stages, attached) == brute_force(weights, stages, attached), \
                (weights, stages)


def test_a_relu_begins_a_stage_only_when_there_are_too_many_stages():
    model = models.mlp((4, 3, 2))                                   # Linear, ReLU, Linear
    assert balance_by_parameters(model, 2) == [2, 1]
    assert balance_by_parameters(model, 3) == [1, 1, 1]             # forced: three stages, three layers


def test_stages_compose_back_into_the_model():
    model = models.build("mlp7")
    x = Tensor(np.random.default_rng(0).standard_normal((3, 784)).astype(np.float32))
    a = x
    for start, stop in stage_bounds(balance_by_parameters(model, 4)):
        a = model[start:stop](a)
    np.testing.assert_allclose(a.data, model(x).data, rtol=1e-6)


def test_stage_bounds():
    assert stage_bounds([2, 4, 4, 3]) == [(0, 2), (2, 6), (6, 10), (10, 13)]
    assert stage_bounds([1]) == [(0, 1)]
    with pytest.raises(ValueError, match="positive"):
        stage_bounds([2, 0, 1])


def test_check_stages():
    assert check_stages(13, 1) is None and check_stages(13, 13) is None
    assert check_stages(13, 14) == "more stages (14) than layers (13): every stage needs at least one layer"
    assert "at least 1 stage" in check_stages(13, 0)
    assert check_stages(0, 1) == "the model has no layers"
    with pytest.raises(ValueError, match=r"more stages \(14\) than layers \(13\)"):
        balance_by_parameters(models.build("mlp7"), 14)


def test_parse_balance_accepts_a_valid_balance():
    assert parse_balance("3,2,2,1", 8, 4) == [3, 2, 2, 1]
    assert parse_balance(" 5 , 8 ", 13, 2) == [5, 8]
    assert parse_balance("13", 13, 1) == [13]


@pytest.mark.parametrize("text, n_layers, stages, message", [
    ("3,2,2", 8, 3, "--balance 3,2,2 sums to 7, the model has 8 layers"),
    ("3,2,2", 7, 4, "--balance 3,2,2 has 3 stages, the pipeline has 4"),
    ("3,0,5", 8, 3, "--balance 3,0,5: every stage needs at least one layer, got 0"),
    ("3,-1,6", 8, 3, "--balance 3,-1,6: every stage needs at least one layer, got -1"),
    ("3,x,5", 8, 3, "--balance 3,x,5: 'x' is not a whole number of layers"),
    ("3,2.5,2.5", 8, 3, "--balance 3,2.5,2.5: '2.5' is not a whole number of layers"),
    ("3,,5", 8, 3, "--balance 3,,5: '' is not a whole number of layers"),
    ("", 8, 3, "--balance is empty: give 3 positive layer counts separated by commas"),
    ("1,1,1,1", 3, 4, "--balance 1,1,1,1: more stages (4) than layers (3)"),
])
def test_parse_balance_names_what_is_wrong(text, n_layers, stages, message):
    with pytest.raises(ValueError) as caught:
        parse_balance(text, n_layers, stages)
    assert str(caught.value).startswith(message), str(caught.value)


def test_balance_by_time_returns_a_valid_partition_and_leaves_gradients_alone():
    model = models.build("mlp7")
    x = Tensor(np.random.default_rng(1).standard_normal((8, 784)).astype(np.float32))
    for stages in (1, 3, 13):
        balance = balance_by_time(model, stages, x, repeats=2)
        assert len(balance) == stages and sum(balance) == 13 and min(balance) >= 1
    assert all(p.grad is None for p in model.parameters())


def test_lenet5_cuts_too():
    model = models.build("lenet5")
    for stages in range(1, 5):
        balance = balance_by_parameters(model, stages)
        assert len(balance) == stages and sum(balance) == len(model)
        counts = parameter_counts(model)
        assert heaviest(counts, balance) == heaviest(counts, brute_force(counts, stages, [c == 0 for c in counts]))
