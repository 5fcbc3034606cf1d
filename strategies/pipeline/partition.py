"""Which layers each pipeline stage runs (MATH A4): a contiguous cut of the Sequential
(MATH F2) that makes the heaviest stage as light as it can be.

A pipeline moves at the pace of its slowest stage, so the stages should carry equal work
(MATH A10). Layers 0 .. L-1 have weights w_l (parameter counts, or measured seconds); p
stages take contiguous, nonempty runs of them, cut at 0 = c_0 < c_1 < ... < c_p = L:

    minimise over the cuts   max_s  W(c_s, c_{s+1}),      W(i, j) = sum_{l=i}^{j-1} w_l

solved exactly by dynamic programming over prefixes (B(k, j): the best max over the first
j layers cut into k stages):

    B(1, j) = W(0, j),        B(k, j) = min_{k-1 <= i < j} max(B(k-1, i), W(i, j))

B(p, L) is the optimum. Cost: O(L^2 p) time and O(L p) memory with prefix sums, nothing for
L <= 50. Many cuts usually reach B(p, L) (below: any cut of the last 11 layers of mlp7 into
two stages under 100,480). Among those a second pass over the same prefixes, stages kept
<= B(p, L), prefers (1) the fewest stages that begin with a layer without parameters (a
ReLU goes with the affine layer before it) and then (2) the smallest sum_s W_s^2 (the other
stages balanced too); both are sums over stages, so the same recursion is exact for them.
Remaining ties: the last cut as early as possible, then the one before it, and so on, so
the answer is deterministic for given weights.

    mlp7 by parameters:   layer  L1      R  L2     R  L3     R  L4 ... L7
                          w_l    100480  0  16383  0  16128  0  15875 ... 1240
                          p = 2  [2, 11]: L1 alone weighs more than the other six together
"""
import time

import numpy

from engine import backend


def check_stages(n_layers, stages):
    """Why ``n_layers`` layers cannot be cut into ``stages`` nonempty stages, or None."""
    if not isinstance(stages, int) or isinstance(stages, bool) or stages < 1:
        return f"need at least 1 stage, got {stages!r}"
    if n_layers < 1:
        return "the model has no layers"
    if stages > n_layers:
        return f"more stages ({stages}) than layers ({n_layers}): every stage needs at least one layer"
    return None


def stage_bounds(balance):
    """[(start, stop)] of each stage's layers: balance [2, 3] -> [(0, 2), (2, 5)], so stage
    s is ``model[start:stop]``."""
    if any(not isinstance(n, int) or n < 1 for n in balance):
        raise ValueError(f"balance {list(balance)}: every stage needs a positive number of layers")
    edges = numpy.cumsum([0, *balance]).tolist()
    return list(zip(edges[:-1], edges[1:]))


def parse_balance(text, n_layers, stages):
    """``--balance 3,2,2,1`` as [3, 2, 2, 1]: positive ints, one per stage, summing to the
    model's layers; a ValueError naming what is wrong otherwise."""
    items = [item.strip() for item in str(text).split(",")]
    if not any(items):
        raise ValueError(f"--balance is empty: give {stages} positive layer counts separated by commas")
    try:
        balance = [int(item) for item in items]
    except ValueError:
        bad = next(item for item in items if not _is_int(item))
        raise ValueError(f"--balance {text}: {bad!r} is not a whole number of layers") from None
    if min(balance) < 1:
        raise ValueError(f"--balance {text}: every stage needs at least one layer, got {min(balance)}")
    reason = check_stages(n_layers, stages)
    if reason:
        raise ValueError(f"--balance {text}: {reason}")
    if len(balance) != stages:
        raise ValueError(f"--balance {text} has {len(balance)} stages, the pipeline has {stages}")
    if sum(balance) != n_layers:
        raise ValueError(f"--balance {text} sums to {sum(balance)}, the model has {n_layers} layers")
    return balance


def _is_int(item):
    try:
        int(item)
        return True
    except ValueError:
        return False


def min_max_partition(weights, stages, attached=None):
    """Layers per stage (a list of ``stages`` positive ints summing to len(weights)) that
    minimises the heaviest stage; ties as in the module docstring. ``attached[l]`` True:
    layer l would rather not begin a stage (it has no parameters)."""
    n = len(weights)
    reason = check_stages(n, stages)
    if reason:
        raise ValueError(f"min_max_partition: {reason}")
    attached = attached or [False] * n
    prefix = [0]
    for w in weights:
        prefix.append(prefix[-1] + w)

    def W(i, j):            # one expression for both passes, so float sums compare the same
        return prefix[j] - prefix[i]

    # Pass 1: B[k][j], the smallest heaviest stage over the first j layers in k stages.
    inf = float("inf")
    B = [[inf] * (n + 1) for _ in range(stages + 1)]
    B[0][0] = 0
    for k in range(1, stages + 1):
        for j in range(k, n - (stages - k) + 1):   # leave a layer for each later stage
            B[k][j] = min(max(B[k - 1][i], W(i, j)) for i in range(k - 1, j))
    best = B[stages][n]

    # Pass 2: among cuts with every stage <= best, the least (ReLU-led stages, sum of W^2).
    C = [[None] * (n + 1) for _ in range(stages + 1)]   # (cost, cut before the last stage)
    C[0][0] = ((0, 0), None)
    for k in range(1, stages + 1):
        for j in range(k, n - (stages - k) + 1):
            for i in range(k - 1, j):
                if C[k - 1][i] is None or W(i, j) > best:
                    continue
                (led, squares), _ = C[k - 1][i]
                cost = (led + (i > 0 and bool(attached[i])), squares + W(i, j) ** 2)
                if C[k][j] is None or cost < C[k][j][0]:          # strict: earliest i wins
                    C[k][j] = (cost, i)
    balance, j = [], n
    for k in range(stages, 0, -1):
        i = C[k][j][1]
        balance.append(j - i)
        j = i
    return balance[::-1]


def parameter_counts(model):
    """Parameters of each layer of the Sequential: [100480, 0, 16383, ...] for mlp7."""
    return [sum(p.numel() for p in layer.parameters()) for layer in model]


def balance_by_parameters(model, stages):
    """Layers per stage, contiguous, minimising the largest stage's parameter count (so its
    memory for theta, gradient and optimiser state); ReLUs stay with the layer before."""
    counts = parameter_counts(model)
    return min_max_partition(counts, stages, attached=[c == 0 for c in counts])


def layer_seconds(model, sample_input, repeats=3):
    """Forward + backward seconds of each layer on ``sample_input`` (a Tensor): the fastest
    of ``repeats`` runs (the first may compile kernels or warm caches). Each layer gets the
    previous layer's output, and its backward starts from dL/d(out) = ones and reaches its
    input as a pipeline stage's must. Parameters' gradients are put back as they were."""
    x, seconds = sample_input.detach(), []
    for layer in model:
        saved = [(p, p.grad) for p in layer.parameters()]
        fastest = float("inf")
        for _ in range(repeats):
            for p, _ in saved:
                p.grad = None                       # every run assigns, none accumulates
            a = x.detach().requires_grad_(x.dtype.kind in "fc")
            start = time.perf_counter()
            out = layer(a)
            if out.requires_grad:
                out.backward(backend.array_module(out.data).ones_like(out.data))
            _wait(out.data if a.grad is None else a.grad)
            fastest = min(fastest, time.perf_counter() - start)
        for p, grad in saved:
            p.grad = grad
        seconds.append(fastest)
        x = out.detach()
    return seconds


def _wait(array):
    """Return once the device has finished ``array``: a one-element copy to the host waits
    for a CuPy array's kernels; a NumPy array is already done."""
    if type(array) is not numpy.ndarray and array.size:
        backend.to_numpy(array.reshape(-1)[:1])


def balance_by_time(model, stages, sample_input, repeats=3):
    """Layers per stage, contiguous, minimising the slowest stage's measured forward +
    backward seconds (``layer_seconds``). Parameter-free layers prefer the stage of the layer
    before them when that costs nothing. The timings, hence the answer, vary from run to run:
    measure on one rank and broadcast the balance, or pass it as --balance."""
    counts = parameter_counts(model)
    return min_max_partition(layer_seconds(model, sample_input, repeats), stages,
                             attached=[c == 0 for c in counts])
