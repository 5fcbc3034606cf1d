"""Trained quantization: k-means weight sharing and centroid fine-tuning (MATH A7; Han et al.,
Deep Compression, ICLR 2016, the stage between pruning and Huffman coding).

The nonzero weights of one layer are clustered into K = 2^b values c_1..c_K (1-D k-means,
Lloyd's algorithm); each weight is then stored as the b-bit index of its centroid:

    assign   i(w) = argmin_k |w - c_k|          (c sorted: a search among the midpoints)
    update   c_k  = mean { w : i(w) = k }       (an empty cluster keeps its centroid)

repeated until no assignment changes. The centroids start evenly spaced between min w and
max w ("linear initialisation", which Han et al. found best: the rare large weights, which
matter most, keep centroids of their own; density-based starts crowd them into the middle).
A layer of n nonzeros then costs n b bits + K float32 instead of 32 n bits.

Fine-tuning keeps the sharing: every member of cluster k IS c_k, so by the chain rule

    dL/dc_k = sum_{w : i(w) = k} dL/dw          (the members' gradients, summed)

and ``Sharing.fine_tune_step(lr)`` does c_k -= lr dL/dc_k, then writes each weight back as its
centroid. Pruned weights are no cluster's members: they stay exactly zero. Their positions are
kept apart, in ``masks[name]`` (the CSR structure, sparse.py), so no index is reserved for
zero: all K indices name nonzero centroids. ``indices[name]`` is a uint8 array of the weight's
shape whose pruned entries hold 0 and mean nothing (read them through the mask).
"""
import numpy

from engine.nn.conv import Conv2d
from engine.nn.linear import Linear


def _nearest(values, centroids):
    """Index of the nearest of the sorted ``centroids`` for each value (ties: the lower)."""
    return numpy.searchsorted((centroids[1:] + centroids[:-1]) / 2, values, side="left")


def kmeans_1d(values, k, iters=100):
    """(centroids float64 (k,), labels int64): Lloyd's algorithm from the linear start, on a
    1-D set. Deterministic (no random start). Cost: O(n log k) per iteration."""
    values = numpy.asarray(values, dtype=numpy.float64).ravel()
    if values.size == 0:
        return numpy.zeros(k), numpy.zeros(0, numpy.int64)
    centroids = numpy.linspace(values.min(), values.max(), k)
    labels = None
    for _ in range(iters):
        new = _nearest(values, centroids)
        if labels is not None and numpy.array_equal(new, labels):
            break  # converged: the centroids are the means of these labels
        labels = new
        sums = numpy.bincount(labels, weights=values, minlength=k)
        counts = numpy.bincount(labels, minlength=k)
        # A mean lies inside its cluster's interval, so the centroids stay sorted.
        centroids = numpy.where(counts > 0, sums / numpy.maximum(counts, 1), centroids)
    return centroids, _nearest(values, centroids)


def _weight_layers(module, prefix=""):
    """(weight's dotted name, module's dotted name, module) for each Linear and Conv2d."""
    out = []
    for name, child in module.named_children():
        if isinstance(child, (Linear, Conv2d)):
            out.append((f"{prefix}{name}.weight", f"{prefix}{name}", child))
        out.extend(_weight_layers(child, prefix=f"{prefix}{name}."))
    return out


class Sharing:
    """The shared weights of a model: per weight name, ``centroids`` (K,) in the weight's dtype,
    ``indices`` uint8 of the weight's shape, ``masks`` bool (True: kept), ``bits``. The model's
    weights are ``centroids[indices] * masks`` after every call of ``apply``/``fine_tune_step``."""

    def __init__(self, model, params, bits, centroids, indices, masks):
        self.model, self.params = model, params
        self.bits, self.centroids, self.indices, self.masks = bits, centroids, indices, masks
        self.centroid_grads = {}

    @property
    def names(self):
        return list(self.params)

    def nonzero_indices(self, name):
        """The indices of the kept weights, in row-major order: CSR's ``data`` order."""
        return self.indices[name][self.masks[name]]

    def apply(self):
        """Write every shared weight as its centroid (pruned: 0), in place."""
        for name, p in self.params.items():
            p.data[...] = numpy.where(self.masks[name], self.centroids[name][self.indices[name]], 0)

    def centroid_gradient(self, name):
        """dL/dc_k = sum of the kept members' dL/dw (float64 (K,)), from the weight's .grad."""
        grad = numpy.asarray(self.params[name].grad)
        mask = self.masks[name]
        return numpy.bincount(self.indices[name][mask], weights=grad[mask],
                              minlength=len(self.centroids[name]))

    def fine_tune_step(self, lr):
        """After ``loss.backward()``: c_k -= lr dL/dc_k for every shared layer, then ``apply``.
        Only the shared weights: step the other parameters (biases) with an optimiser, before
        this call (an optimiser's move of a shared weight is overwritten here, which is why)."""
        for name, p in self.params.items():
            if p.grad is None:
                continue
            self.centroid_grads[name] = self.centroid_gradient(name)
            c = self.centroids[name]
            c -= (lr * self.centroid_grads[name]).astype(c.dtype)
        self.apply()


def share_weights(model, bits=5, masks=None, iters=100):
    """Cluster the nonzero weights of ``model``'s Linear and Conv2d layers (in place) and
    return the ``Sharing``. ``bits``: an int for every such layer, or a dict naming some of
    them by weight name ("0.weight"), module name ("0") or the module itself. ``masks``:
    {weight name: bool array}, the kept weights (default: the nonzero ones)."""
    layers = _weight_layers(model)
    if isinstance(bits, dict):
        known = {key for layer in layers for key in layer[:2]} | {id(layer[2]) for layer in layers}
        unknown = [k for k in bits if (id(k) if not isinstance(k, str) else k) not in known]
        if unknown:
            raise KeyError(f"share_weights: no Linear or Conv2d named {unknown}")
        by_key = {(id(k) if not isinstance(k, str) else k): b for k, b in bits.items()}
        chosen = [(w, by_key.get(w, by_key.get(m, by_key.get(id(mod))))) for w, m, mod in layers]
    else:
        chosen = [(w, bits) for w, _, _ in layers]
    params = dict(model.named_parameters())
    shared = {"params": {}, "bits": {}, "centroids": {}, "indices": {}, "masks": {}}
    for name, b in chosen:
        if b is None:
            continue
        if not 1 <= b <= 8:
            raise ValueError(f"share_weights: {name}: bits must be 1..8 (uint8 indices), got {b}")
        p = params[name]
        w = numpy.asarray(p.data)
        mask = (w != 0) if masks is None or name not in masks else numpy.asarray(masks[name], bool)
        centroids, labels = kmeans_1d(w[mask], 2 ** b, iters)
        indices = numpy.zeros(w.shape, numpy.uint8)
        indices[mask] = labels
        for key, value in (("params", p), ("bits", b), ("centroids", centroids.astype(w.dtype)),
                           ("indices", indices), ("masks", mask)):
            shared[key][name] = value
    sharing = Sharing(model, **shared)
    sharing.apply()
    return sharing
