"""Tensor parallelism in the in-process world (ranks as threads): sharded == whole, and its bytes.

Every tp rank runs the sharded model on the same batch; the whole model, gathered back, must
equal the unsharded one run on one rank. Tolerance 1e-10 in float64: the sharded layers add the
same products in another order (blocks, then the ring's sum), an ulp or so (1e-16) per sum, and
three SGD steps do not amplify that much. The bytes are the formula's exactly (t divides the
activations' element count in these tests; collectives/ring.py has the uneven count).
"""
import types

import numpy as np
import pytest

import collectives
import engine.functional as F
from engine import Tensor, manual_seed, models, nn, optim
from engine.gradcheck import gradcheck
from strategies.parameters import cast_model
from strategies.traffic import allreduce_bytes
from strategies.tensor_parallel import (ColumnParallelLinear, RowParallelLinear, copy_to_tp,
                                        gather_sequential, reduce_from_tp, shard_sequential)

TOL64 = 1e-10
DEEP = (784, 128, 127, 126, 125, 124, 123, 10)    # 7 Linear: 3 (column, row) pairs + 1 replicated
SMALL = (20, 16, 4)                               # 1 pair


def build(sizes):
    manual_seed(0)                                 # every rank: the same whole model
    return cast_model(models.mlp(sizes), np.float64)


def batch(sizes, n=32, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, sizes[0])), rng.integers(0, sizes[-1], n)


def forward_backward(model, x, y):
    model.zero_grad()
    out = model(Tensor(x))
    loss = F.cross_entropy(out, y)
    loss.backward()
    return out.data, loss.item()


def max_difference(a, b):
    """Largest |difference| of outputs, and of every parameter and gradient, by name."""
    worst = 0.0
    for (name, p), (name_b, q) in zip(a.named_parameters(), b.named_parameters()):
        assert name == name_b and p.shape == q.shape, (name, name_b, p.shape, q.shape)
        worst = max(worst, np.abs(p.data - q.data).max())
        if p.grad is not None or q.grad is not None:
            worst = max(worst, np.abs(p.grad - q.grad).max())
    return worst


@pytest.mark.parametrize("sizes", [DEEP, SMALL], ids=["deep", "small"])
@pytest.mark.parametrize("tp", [1, 2, 4])
def test_forward_loss_and_gradients_equal_the_whole_model(tp, sizes):
    x, y = batch(sizes)
    whole = build(sizes)
    out_ref, loss_ref = forward_backward(whole, x, y)

    def rank(comm):
        sharded = shard_sequential(build(sizes), comm)
        out, loss = forward_backward(sharded, x, y)
        return out, loss, max_difference(gather_sequential(sharded, comm), whole), sharded

    results = collectives.spawn(rank, tp)
    for out, loss, diff, _ in results:
        assert np.abs(out - out_ref).max() < TOL64
        assert abs(loss - loss_ref) < TOL64
        assert diff < TOL64
    sharded = results[0][3]
    kinds = [type(m).__name__ for m in sharded if not isinstance(m, nn.ReLU)]
    assert kinds == (["ColumnParallelLinear", "RowParallelLinear"] * 3 + ["Linear"]
                     if sizes == DEEP else ["ColumnParallelLinear", "RowParallelLinear"])


@pytest.mark.parametrize("tp", [1, 2, 4])
def test_sgd_steps_on_the_shards_equal_the_same_steps_on_the_whole_model(tp):
    batches = [batch(DEEP, seed=s) for s in range(3)]
    whole = build(DEEP)
    opt = optim.SGD(whole.parameters(), lr=0.1, momentum=0.9)
    for x, y in batches:
        forward_backward(whole, x, y)
        opt.step()

    def rank(comm):
        sharded = shard_sequential(build(DEEP), comm)
        opt = optim.SGD(sharded.parameters(), lr=0.1, momentum=0.9)   # this rank's shard only
        for x, y in batches:
            forward_backward(sharded, x, y)
            opt.step()
        gathered = gather_sequential(sharded, comm)
        theta = np.concatenate([p.data.ravel() for p in gathered.parameters()])
        return max_difference(gathered, whole), theta

    results = collectives.spawn(rank, tp)
    assert max(diff for diff, _ in results) < TOL64
    for _, theta in results[1:]:    # the ring's sums are bit-identical on every rank, and so
        np.testing.assert_array_equal(theta, results[0][1])   # are the replicated layers' steps


def test_uneven_widths_are_near_equal_contiguous_blocks():
    """127 outputs on 4 ranks: 31 32 32 32 (shard_bounds: lo_j = floor(j n / t)); the row
    layer takes the same blocks of its inputs. (The deep mlp runs them end to end.)"""
    manual_seed(0)
    a, b = nn.Linear(10, 127, dtype=np.float64), nn.Linear(127, 5, dtype=np.float64)
    blocks = []
    for r in range(4):
        comm = types.SimpleNamespace(rank=r, size=4)        # the layers only read rank and size
        col, row = ColumnParallelLinear(a, comm), RowParallelLinear(b, comm)
        assert (col.lo, col.hi) == (row.lo, row.hi)
        np.testing.assert_array_equal(col.weight.data, a.weight.data[col.lo:col.hi])
        np.testing.assert_array_equal(col.bias.data, a.bias.data[col.lo:col.hi])
        np.testing.assert_array_equal(row.weight.data, b.weight.data[:, row.lo:row.hi])
        np.testing.assert_array_equal(row.bias.data, b.bias.data)       # whole, added once
        assert col.weight.data.base is None                             # a copy, not a view
        blocks.append((col.lo, col.hi))
    assert blocks == [(0, 31), (31, 63), (63, 95), (95, 127)]


def test_a_layer_narrower_than_tp_is_a_clear_error():
    model = nn.Sequential(nn.Linear(20, 3), nn.ReLU(), nn.Linear(3, 5))
    with pytest.raises(ValueError, match=r"layer 0 has 3 output features, fewer than the 4"):
        shard_sequential(model, types.SimpleNamespace(rank=0, size=4))


def test_dropout_ends_a_pair_and_unpaired_layers_are_replicated():
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5), nn.Linear(8, 8), nn.Tanh(),
                          nn.Linear(8, 8), nn.Flatten(), nn.Linear(8, 4))
    sharded = shard_sequential(model, types.SimpleNamespace(rank=0, size=2))
    assert [type(m).__name__ for m in sharded] == ["Linear", "Dropout", "ColumnParallelLinear",
                                                  "Tanh", "RowParallelLinear", "Flatten", "Linear"]
    assert [n for n, _ in sharded.named_children()] == [n for n, _ in model.named_children()]
    assert sharded[0].weight is not model[0].weight                     # a copy of its own


@pytest.mark.parametrize("tp", [1, 2, 4])
def test_one_block_sends_two_allreduces_of_the_activation(tp):
    """Column(16 -> 24) -> ReLU -> Row(24 -> 16): g forward, f backward, nothing else."""
    manual_seed(0)
    block = nn.Sequential(nn.Linear(16, 24, dtype=np.float64), nn.ReLU(),
                          nn.Linear(24, 16, dtype=np.float64))
    x = np.random.default_rng(0).standard_normal((8, 16))              # 8 x 16 float64: 1024 B

    def rank(comm):
        sharded = shard_sequential(block, comm)
        counters = comm.counters
        bytes0, messages0 = counters.bytes_sent, counters.messages_sent
        sharded(Tensor(x, requires_grad=True)).sum().backward()   # x an earlier layer's output
        block_bytes = counters.bytes_sent - bytes0
        block_messages = counters.messages_sent - messages0
        bytes0 = counters.bytes_sent
        sharded(Tensor(x)).sum().backward()       # x is data: f's backward has nothing to sum
        return block_bytes, block_messages, counters.bytes_sent - bytes0

    one = allreduce_bytes("ring", tp, x.nbytes)                         # 2 (t-1)/t n
    for sent, messages, data_bytes in collectives.spawn(rank, tp):
        assert sent == 2 * one                                          # g forward + f backward
        assert messages == 2 * 2 * (tp - 1)                             # 2 (t-1) per all-reduce
        assert data_bytes == one                                        # g only


def test_the_deep_mlp_all_reduces_once_per_block_each_way():
    """3 blocks: 3 forward (g); backward 2 (f): the first block's input is data."""
    x, y = batch(DEEP)

    def rank(comm):
        sharded = shard_sequential(build(DEEP), comm)
        forward_backward(sharded, x, y)
        return comm.counters.messages_sent

    assert collectives.spawn(rank, 2) == [5 * 2, 5 * 2]        # 2 (t-1) = 2 messages each


def test_the_operators_gradients_by_finite_differences():
    """x replicated, w_r different on each rank: z = sum_r f(x) w_r; dz/dx = sum_r w_r."""
    x = np.random.default_rng(2).standard_normal((3, 4))

    def rank(comm):
        w = Tensor(np.random.default_rng(10 + comm.rank).standard_normal((3, 4)))
        fn = lambda t: reduce_from_tp(copy_to_tp(t, comm) * w, comm)  # noqa: E731
        return gradcheck(fn, [Tensor(x.copy(), requires_grad=True)])   # its own: perturbed in place

    assert collectives.spawn(rank, 2) == [True, True]
