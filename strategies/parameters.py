"""Moving whole models between ranks: flatten, broadcast, average, assemble from parts.

    flat_parameters(model)              theta as one flat array, in parameters() order     (n,)
    load_flat_parameters(model, flat)   the inverse, in place
    broadcast_parameters(model, comm)   every rank takes rank 0's theta_0            (MATH A1)
    averaged_copy(model, comm)          a copy holding (1/K) sum_i theta_i           (MATH F11)
    assembled_copy(model, owned, comm)  a copy whose every parameter comes from the rank that
                                        owns it (a pipeline stage, a parameter server)
    gradients(params)                   each p.grad, zeros where backward gave none
"""
import copy

import numpy

import collectives
from strategies.messages import broadcast_json, gather_json


def flat_parameters(model):
    """All parameters in one new flat array, in ``parameters()`` order.      (n,)"""
    return numpy.concatenate([p.data.reshape(-1) for p in model.parameters()])


def load_flat_parameters(model, flat):
    """Write a flat array back into the parameters, in place (the inverse of the above)."""
    offset = 0
    for p in model.parameters():
        p.data[...] = flat[offset:offset + p.data.size].reshape(p.shape)
        offset += p.data.size


def broadcast_parameters(model, comm):
    """Every rank takes rank 0's parameters, in place (MATH A1: the same theta_0 everywhere).

    One checked broadcast per parameter: if the ranks built different models the check
    raises on every rank here, before any training step. Returns the bytes this rank sent."""
    before = comm.counters.bytes_sent
    for p in model.parameters():
        collectives.broadcast(comm, p.data, root=0, out=p.data)
    return comm.counters.bytes_sent - before


def averaged_copy(model, comm):
    """A copy of ``model`` holding theta_bar = (1/K) sum_i theta_i (MATH F11), over ``comm``."""
    average = copy.deepcopy(model)
    mean = collectives.allreduce(comm, flat_parameters(model), "ring", "mean", check=False)
    load_flat_parameters(average, mean)
    return average


def assembled_copy(model, owned, comm):
    """A copy of the whole ``model`` in which each parameter holds its owner's values.

    ``model``: the whole model as every rank built it (same names and shapes everywhere);
    ``owned``: {name in model.named_parameters(): array} for the parameters this rank trains
    (a pipeline stage: its layers; a server: its shard; nobody else: {}). Collective over
    ``comm``: the lowest rank claiming a name is its owner and broadcasts it. A parameter no
    rank owns is an error on every rank (a strategy that forgot a layer)."""
    whole = copy.deepcopy(model)
    claims = gather_json(comm, sorted(owned))                  # rank 0: every rank's names
    owners = None
    if comm.rank == 0:
        owners = {}
        for rank, names in enumerate(claims):
            for name in names:
                owners.setdefault(name, rank)
    owners = broadcast_json(comm, owners)
    for name, p in whole.named_parameters():
        if name not in owners:
            raise ValueError(f"rank {comm.rank} of {comm.size}: parameter {name!r} {p.shape} "
                             "is owned by no rank")
        root = owners[name]
        if comm.rank == root:
            p.data[...] = owned[name]
        collectives.broadcast(comm, p.data, root=root, out=p.data, check=False)
    return whole


def gradients(params):
    """Each parameter's gradient; zeros for one that got none (unused in this step's graph),
    so that every rank all-reduces arrays of the same shapes."""
    for p in params:
        if p.grad is None:
            p.grad = numpy.zeros_like(p.data)
    return [p.grad for p in params]


def cast_model(model, dtype):
    """Cast every parameter to ``dtype`` in place (float64 for the exact-equivalence tests)."""
    for p in model.parameters():
        p.data = p.data.astype(dtype)
    return model
