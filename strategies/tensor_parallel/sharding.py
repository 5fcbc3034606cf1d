"""A Sequential split over a tensor-parallel communicator, and the whole model back.

    sharded = shard_sequential(model, grid.tp)     # every tp rank: its shard of each layer
    whole = gather_sequential(sharded, grid.tp)    # every tp rank: the full model (eval, save)

shard_sequential pairs each Linear with the next one when only elementwise layers stand
between them, left to right, and makes the pair a (column, row) block (layers.py; MATH A4,
a layer split by columns):

    mlp 784-128-127-126-125-124-123-10    Linear Linear | Linear Linear | Linear Linear | Linear
                                          column row    | column row    | column row    | replicated

A Linear left without a partner stays whole on every rank (replicated): its input is the
whole activation and its output gradient is too, so its gradient is the same on every rank
and the same step keeps the copies equal. Elementwise means deterministic and per entry
(ReLU, Sigmoid, Tanh): Dropout is not, its mask on a shard would not be the shard of the full
model's mask, so a Dropout ends a pair. Other layers are copied unchanged. Values are the full
model's, and layer names are kept, so the sharded model computes what the full one does, up to
the order of the sums (float64: ~1e-15), and state-dict keys are the full model's.

gather_sequential: for each sharded layer, every rank's block (and gradient, where backward has
made one) is all-gathered and put back in place. Blocks may differ by one feature, so each is
padded to the largest first: per parameter of n bytes, t - 1 padded blocks of ceil(n/t) bytes
sent per rank (collectives/ring.py all_gather).
"""
import copy

import collectives
from engine import backend
from engine.nn.activation import ReLU, Sigmoid, Tanh
from engine.nn.container import Sequential
from engine.nn.linear import Linear
from engine.random import default_generator
from strategies.parameter_server.shards import shard_bounds
from strategies.tensor_parallel.layers import ColumnParallelLinear, RowParallelLinear

ELEMENTWISE = (ReLU, Sigmoid, Tanh)   # a shard in, the same shard of the result out


def pairs(layers):
    """{index of a column layer: index of its row layer}, pairing greedily from the left."""
    partner, i = {}, 0
    while i < len(layers):
        if isinstance(layers[i], Linear):
            j = i + 1
            while j < len(layers) and isinstance(layers[j], ELEMENTWISE):
                j += 1
            if j < len(layers) and isinstance(layers[j], Linear):
                partner[i] = j
                i = j + 1
                continue
        i += 1
    return partner


def shard_sequential(model, comm):
    """This rank's shard of ``model`` (a new Sequential, the same layer names) over ``comm``."""
    names, layers = [name for name, _ in model.named_children()], list(model)
    partner = pairs(layers)
    rows = set(partner.values())
    out = []
    for i, (name, layer) in enumerate(zip(names, layers)):
        if i in partner:
            out.append(ColumnParallelLinear(layer, comm, name=name))
        elif i in rows:
            out.append(RowParallelLinear(layer, comm, name=name))
        else:
            out.append(copy.deepcopy(layer))   # replicated, or not a Linear: a copy of its own
    return Sequential(*out, names=names)


def gather_sequential(sharded, comm):
    """The whole model (a new Sequential) on every rank of ``comm``, from ``sharded``'s blocks.
    Collective. Gradients are gathered too where the shards have them (same on every rank)."""
    names, out = [], []
    for name, layer in sharded.named_children():
        names.append(name)
        if isinstance(layer, (ColumnParallelLinear, RowParallelLinear)):
            out.append(_whole_linear(layer, comm))
        else:
            out.append(copy.deepcopy(layer))
    return Sequential(*out, names=names)


def _whole_linear(layer, comm):
    """The Linear that ``layer`` (a column or row shard) is a block of."""
    column = isinstance(layer, ColumnParallelLinear)
    n = layer.out_features if column else layer.in_features            # the split features
    widths = [hi - lo for lo, hi in shard_bounds(n, comm.size)]        # every rank's, known
    whole = _empty_linear(layer)
    pieces = [(whole.weight, layer.weight, 0 if column else 1)]       # weight (out, in)
    if layer.bias is not None:                                         # a row layer's is whole
        pieces.append((whole.bias, layer.bias, 0 if column else None))
    for target, shard, axis in pieces:
        for field in ("data", "grad"):
            block = getattr(shard, field)
            if block is not None:
                setattr(target, field, block.copy() if axis is None else
                        _all_gather_blocks(comm, block, axis, widths))
    return whole


def _empty_linear(layer):
    """A Linear of ``layer``'s whole shape, dtype and device; its values are overwritten.
    The engine's generator is put back as it was: building one must not change the random
    stream of the rank (dropout masks, later initialisations) just because it evaluated."""
    generator = default_generator()
    state = generator.bit_generator.state
    whole = Linear(layer.in_features, layer.out_features, bias=layer.bias is not None,
                   dtype=layer.weight.dtype, device=layer.weight.device)
    generator.bit_generator.state = state
    return whole


def _all_gather_blocks(comm, block, axis, widths):
    """Every rank's ``block`` joined along ``axis`` in rank order; rank r's is ``widths[r]``
    long on that axis (they differ by at most one), so each is padded to the largest."""
    if comm.size == 1:
        return block.copy()
    xp = backend.array_module(block)
    front = xp.moveaxis(block, axis, 0)                                  # (width_i, ...)
    padded = xp.zeros((max(widths),) + front.shape[1:], block.dtype)
    padded[:front.shape[0]] = front
    stacked = collectives.all_gather(comm, padded, check=False)          # (t, max width, ...)
    joined = xp.concatenate([stacked[r, :w] for r, w in enumerate(widths)], axis=0)
    return xp.ascontiguousarray(xp.moveaxis(joined, 0, axis))
