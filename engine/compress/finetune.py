"""Training and scoring a model while it is compressed (MATH A7): the loop pruning and sharing need.

    fine_tune(model, X, y, steps=500, lr=0.01)                    # masks kept by their hooks
    fine_tune(model, X, y, steps=500, lr=0.01, sharing=sharing)   # centroids step (Han et al.)
    fine_tune(model, X, y, steps=900, on_step=lambda t: ...)      # gradual pruning's schedule

Plain minibatch SGD with momentum 0.9 on shuffled batches of 128 (seeded: the same batches for
every method compared), so that the one-shot, iterative and gradual pruning of the benchmark
and the command line differ only in where the masks come from. Cost per step: one forward
and backward of the batch.
"""
import numpy

import engine.functional as F
from engine import Tensor, nn, no_grad, optim


def inputs(model, X):
    """Rows for affine models, (n, 1, 28, 28) images when the first layer is a convolution."""
    return X.reshape(len(X), 1, 28, 28) if isinstance(model[0], nn.Conv2d) else X


def accuracy(model, X, y, rows=1000):
    """Share of ``X``'s rows whose argmax is ``y`` (no graph; in blocks of ``rows``)."""
    with no_grad():
        hits = sum(int((model(Tensor(X[i:i + rows])).numpy().argmax(axis=1) == y[i:i + rows]).sum())
                   for i in range(0, len(X), rows))
    return hits / len(X)


def batches(X, y, batch_size, seed):
    """One shuffled pass: (Tensor, labels) of ``batch_size`` rows (a last partial one dropped)."""
    order = numpy.random.default_rng(seed).permutation(len(X))
    for i in range(0, len(X) - batch_size + 1, batch_size):
        rows = order[i:i + batch_size]
        yield Tensor(X[rows]), y[rows]


def fine_tune(model, X, y, epochs=None, lr=0.01, sharing=None, steps=None, on_step=None, seed=0,
              batch_size=128, optimizer=None):
    """SGD (momentum 0.9) for ``epochs`` passes or ``steps`` steps; returns the optimiser.
    ``sharing``: the shared weights' centroids step by their members' summed gradients (the
    biases by the optimiser). ``on_step(t, optimizer)``: called after step t (a schedule)."""
    if (epochs is None) == (steps is None):
        raise ValueError("fine_tune: give epochs or steps, not both")
    shared = set(sharing.params) if sharing is not None else set()
    if optimizer is None:
        params = [p for name, p in model.named_parameters() if name not in shared]
        optimizer = optim.SGD(params, lr=lr, momentum=0.9)
    t, passes = 0, 0
    while (epochs is None or passes < epochs) and (steps is None or t < steps):
        for xb, yb in batches(X, y, batch_size, seed + passes):
            loss = F.cross_entropy(model(xb), yb)
            model.zero_grad()
            loss.backward()
            optimizer.step()
            if sharing is not None:
                sharing.fine_tune_step(lr)
            t += 1
            if on_step is not None:
                on_step(t, optimizer)
            if steps is not None and t >= steps:
                break
        passes += 1
    return optimizer
