"""Structured pruning: remove whole neurons or channels, so the model really shrinks (MATH A7).

A hidden neuron i of Linear layer l is row i of W_l and entry i of b_l; what it feeds is
column i of W_{l+1}. Between the two only elementwise layers (ReLU, Sigmoid, Tanh, Dropout)
may sit, which keep unit i at position i. Dropping the neuron deletes all three:

    W_l (out, in) -> W_l[kept]      b_l -> b_l[kept]      W_{l+1} (o, out) -> W_{l+1}[:, kept]

The same for a Conv2d output channel c (weight[c], bias[c]) and the next Conv2d's input
channel c (weight[:, c]), through per-channel layers (those and the pools); when Flatten and
a Linear follow instead, channel c of the (N, C, H, W) map is columns c*H*W .. (c+1)*H*W - 1.

The smaller model computes exactly what the same-shape model with those units' weights
zeroed (``masked_equivalent``) computes: a zero column of W_{l+1} ignores whatever the unit
outputs. Neurons are ranked by the L2 (or L1) norm of their row and bias (``neuron_scores``).
Cost: a kept fraction k of every hidden width cuts a Linear between two pruned layers to
k^2 of its flops and weights, its first and last neighbours to k.
"""
import copy

import numpy

from engine import backend
from engine.nn.activation import ReLU, Sigmoid, Tanh
from engine.nn.container import Sequential
from engine.nn.conv import AvgPool2d, Conv2d, MaxPool2d
from engine.nn.linear import Linear
from engine.nn.module import Parameter
from engine.nn.reshaping import Dropout, Flatten

ELEMENTWISE = (ReLU, Sigmoid, Tanh, Dropout)        # unit i in, unit i out
PER_CHANNEL = ELEMENTWISE + (MaxPool2d, AvgPool2d)  # channel c in, channel c out


def neuron_scores(layer, ord=2):
    """The L2 (ord=2) or L1 (ord=1) norm of each output unit's weights and bias: rows of a
    Linear's W, output channels of a Conv2d's weight. Shape (out,)."""
    if ord not in (1, 2):
        raise ValueError(f"neuron_scores: ord must be 1 or 2, got {ord!r}")
    w = backend.to_numpy(layer.weight.data)
    rows = w.reshape(w.shape[0], -1)
    if layer.bias is not None:
        rows = numpy.concatenate([rows, backend.to_numpy(layer.bias.data)[:, None]], axis=1)
    return numpy.linalg.norm(rows.astype(numpy.float64), ord=ord, axis=1)


def _links(model, kind):
    """[(producer name, consumer name, columns per unit)]: each ``kind`` layer of the Sequential
    whose output reaches the next parameter layer through unit-preserving layers only."""
    if not isinstance(model, Sequential):
        raise TypeError(f"structured pruning needs an nn.Sequential, got {type(model).__name__}")
    layers = model.named_children()
    passes = ELEMENTWISE if kind is Linear else PER_CHANNEL
    links = []
    for i, (name, layer) in enumerate(layers):
        if type(layer) is not kind:
            continue
        j = i + 1
        while j < len(layers) and isinstance(layers[j][1], passes):
            j += 1
        flattened = kind is Conv2d and j < len(layers) and isinstance(layers[j][1], Flatten) \
            and layers[j][1].start_dim == 1
        if flattened:
            j += 1
            while j < len(layers) and isinstance(layers[j][1], ELEMENTWISE):
                j += 1
        if j == len(layers):
            continue
        consumer = layers[j][1]
        if not flattened and type(consumer) is kind:
            links.append((name, layers[j][0], 1))
        elif flattened and type(consumer) is Linear:
            hw, rest = divmod(consumer.in_features, layer.out_channels)   # H*W columns a channel
            if rest == 0:
                links.append((name, layers[j][0], hw))
    return links


def _columns(kept, block):
    """The consumer's input indices of the kept units: unit c is c*block .. (c+1)*block - 1."""
    return (kept[:, None] * block + numpy.arange(block)).ravel()


def _keep_counts(model, links, fraction, keep, what):
    """{producer name: how many units it keeps}, from a fraction removed or explicit counts."""
    layers = dict(model.named_children())
    widths = {name: layers[name].weight.shape[0] for name, _, _ in links}
    if (fraction is None) == (keep is None):
        raise ValueError(f"prune_{what}: give exactly one of fraction and keep")
    if fraction is not None:
        if not (isinstance(fraction, (int, float)) and 0 <= fraction < 1):
            raise ValueError(f"prune_{what}: fraction must be a number in [0, 1), got {fraction!r}")
        counts = {name: width - round(fraction * width) for name, width in widths.items()}
        for name, n in counts.items():
            if n < 1:
                raise ValueError(f"prune_{what}: fraction {fraction} would remove every one of the "
                                 f"{widths[name]} {what} of layer {name!r}")
        return counts
    counts = keep if isinstance(keep, dict) else dict(zip(widths, keep))
    if set(counts) - set(widths) or (not isinstance(keep, dict) and len(keep) != len(widths)):
        raise ValueError(f"prune_{what}: keep must give a count for each of the layers "
                         f"{list(widths)}, got {keep!r}")
    for name, n in counts.items():
        if not (isinstance(n, (int, numpy.integer)) and 1 <= n <= widths[name]):
            raise ValueError(f"prune_{what}: keep[{name!r}] must be an integer in "
                             f"[1, {widths[name]}], got {n!r}")
    return counts


def _strongest(layer, n):
    """The indices of the n highest-scoring units, ascending (ties: the earlier unit)."""
    return numpy.sort(numpy.argsort(-neuron_scores(layer), kind="stable")[:n])


def _take(layer, outputs=None, inputs=None):
    """Replace the layer's weight (and bias) by its given output rows / input columns."""
    w, device = layer.weight.data, layer.weight.device
    conv = type(layer) is Conv2d
    if outputs is not None:
        index = backend.to_device(outputs, device)
        w = w[index]
        if layer.bias is not None:
            layer.bias = Parameter(layer.bias.data[index])
        setattr(layer, "out_channels" if conv else "out_features", len(outputs))
    if inputs is not None:
        w = w[:, backend.to_device(inputs, device)]
        setattr(layer, "in_channels" if conv else "in_features", len(inputs))
    layer.weight = Parameter(w)


def _prune(model, kind, fraction, keep, what):
    links = _links(model, kind)
    counts = _keep_counts(model, links, fraction, keep, what)
    layers = dict(model.named_children())
    kept = {name: _strongest(layers[name], counts[name]) for name in counts}
    smaller = copy.deepcopy(model)
    small = dict(smaller.named_children())
    for producer, consumer, block in links:
        if producer in kept:
            _take(small[producer], outputs=kept[producer])
            _take(small[consumer], inputs=_columns(kept[producer], block))
    return smaller, kept


def prune_neurons(model, fraction=None, keep=None):
    """(a smaller Sequential, {layer name: kept row indices}) without the weakest neurons of
    every hidden Linear (one followed, through elementwise layers, by another Linear).

    ``fraction``: each such layer loses round(fraction * width) neurons; or ``keep``: the
    count to keep, a dict by layer name or a list in layer order. ``model`` is unchanged."""
    return _prune(model, Linear, fraction, keep, "neurons")


def prune_channels(model, fraction=None, keep=None):
    """(a smaller Sequential, {layer name: kept channel indices}) without the weakest output
    channels of every Conv2d followed by another Conv2d or by Flatten and a Linear."""
    return _prune(model, Conv2d, fraction, keep, "channels")


def masked_equivalent(model, kept):
    """A copy of ``model``, same shapes, with the units ``kept`` leaves out zeroed: their row
    and bias, and their columns in the consumer. It computes what the smaller model does."""
    links = {p: (c, block) for kind in (Linear, Conv2d) for p, c, block in _links(model, kind)}
    unknown = set(kept) - set(links)
    if unknown:
        raise ValueError(f"masked_equivalent: kept names {sorted(unknown)}, not prunable layers "
                         f"of the model ({sorted(links)})")
    masked = copy.deepcopy(model)
    layers = dict(masked.named_children())
    for name, indices in kept.items():
        producer = layers[name]
        consumer, block = layers[links[name][0]], links[name][1]
        dropped = numpy.setdiff1d(numpy.arange(producer.weight.shape[0]), indices)
        cut = backend.to_device(dropped, producer.weight.device)
        producer.weight.data[cut] = 0
        if producer.bias is not None:
            producer.bias.data[cut] = 0
        columns = _columns(dropped, block)
        consumer.weight.data[:, backend.to_device(columns, consumer.weight.device)] = 0
    return masked
