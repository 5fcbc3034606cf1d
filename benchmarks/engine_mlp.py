"""The MLP section of benchmarks/engine.py: one SGD step three ways, and on the GPU.

mlp     one SGD step (forward, backward, update) of an MLP 784-512-256-10 (ReLU) at batch 128,
        written three ways: the engine (``nn.Sequential``, ``F.cross_entropy``, ``backward()``,
        ``optim.SGD``); by hand in NumPy (the backward derived on paper, below); PyTorch.
        The matmuls are the same in all three (about 0.3 GFLOP a step), so engine/numpy
        measures the engine's Python and memory overhead. Goal: engine <= 1.0x PyTorch.
gpu     (with CuPy and a GPU) the same step at batch 1024 on the GPU, against the same engine
        on the CPU and PyTorch on the GPU; the card is named in the JSON.

The hand-written NumPy backward, for logits Z3 = H2 W3^T + b3 and p = softmax(Z3) (MATH F5, F6):

    dZ3 = (p - onehot(y)) / N                    # (N, 10)
    dW3 = dZ3^T H2,  db3 = sum_n dZ3,  dH2 = dZ3 W3
    dZ2 = dH2 * [Z2 > 0]                         # ReLU passes the gradient where it was open
    ... and so on down to dW1 = dZ1^T X (no dX: the input needs no gradient).

Float32 throughout; the three get the same initial weights and batch, and their losses and
gradients are compared (check_same_gradients) before anything is timed.
"""
import numpy

import engine
import engine.functional as F
from benchmarks import measure
from engine import backend, models, optim

SIZES = (784, 512, 256, 10)
LR = 0.01
# float32 gradients of one step summed in different orders (BLAS blocking, threads) differ
# by about eps * sqrt(terms) of the terms' size (eps = 6e-8, terms <= 784): we ask for 1e-4
# relative, and 1e-4 of the gradient's largest entry absolute (entries near zero come from
# cancellation). Observed at batch 128: at most 1e-8 absolute, against entries up to 5e-2.
GRAD_RTOL = 1e-4
GRAD_ATOL_OF_MAX = 1e-4


# ---- the three implementations: each gives (step, grads) over the same weights ----

def init_weights(seed):
    """[W1, b1, W2, b2, W3, b3], W (out, in) and b U(-1/sqrt(in), 1/sqrt(in)) as in torch."""
    rng = numpy.random.default_rng(seed)
    weights = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        bound = 1 / numpy.sqrt(fan_in)
        weights.append(rng.uniform(-bound, bound, (fan_out, fan_in)).astype(numpy.float32))
        weights.append(rng.uniform(-bound, bound, fan_out).astype(numpy.float32))
    return weights


def engine_mlp(weights, x, y, device="cpu"):
    model = models.mlp(SIZES)                         # Linear-ReLU-Linear-ReLU-Linear
    for p, w in zip(model.parameters(), weights):
        p.data[...] = w
    model.to(device)
    x, y = engine.Tensor(x).to(device), backend.to_device(y, device)
    opt = optim.SGD(model.parameters(), lr=LR)

    def grads():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss.item(), [backend.to_numpy(p.grad) for p in model.parameters()]

    def step():
        grads()
        opt.step()

    return step, grads


def numpy_mlp(weights, x, y):
    W1, b1, W2, b2, W3, b3 = params = [w.copy() for w in weights]
    n = x.shape[0]
    rows = numpy.arange(n)

    def grads():
        # forward
        z1 = x @ W1.T                                   # (N, 512)
        z1 += b1
        h1 = numpy.maximum(z1, 0, out=z1)
        z2 = h1 @ W2.T                                  # (N, 256)
        z2 += b2
        h2 = numpy.maximum(z2, 0, out=z2)
        z3 = h2 @ W3.T                                  # (N, 10)
        z3 += b3
        z3 -= z3.max(axis=1, keepdims=True)             # stable softmax: exponents <= 0
        p = numpy.exp(z3)
        s = p.sum(axis=1, keepdims=True)
        loss = float(numpy.log(s[:, 0]).sum() - z3[rows, y].sum()) / n
        # backward
        p /= s
        p[rows, y] -= 1
        p /= n                                          # dZ3 (N, 10)
        dW3, db3 = p.T @ h2, p.sum(axis=0)
        dh2 = p @ W3                                    # (N, 256)
        dh2 *= h2 > 0                                   # dZ2 (a mask product: 15x faster
                                                        # than dh2[h2 <= 0] = 0)
        dW2, db2 = dh2.T @ h1, dh2.sum(axis=0)
        dh1 = dh2 @ W2                                  # (N, 512)
        dh1 *= h1 > 0                                   # dZ1
        dW1, db1 = dh1.T @ x, dh1.sum(axis=0)
        return loss, [dW1, db1, dW2, db2, dW3, db3]

    def step():                                         # theta <- theta - lr * grad
        for w, g in zip(params, grads()[1]):
            g *= LR          # the gradients are ours to scale: no temporary
            w -= g

    return step, grads


def torch_mlp(weights, x, y, device="cpu"):
    import torch
    layers = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        layers += [torch.nn.Linear(fan_in, fan_out), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    with torch.no_grad():
        for p, w in zip(model.parameters(), weights):
            p.copy_(torch.from_numpy(w))
    model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    x, y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)

    def grads():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss.item(), [p.grad.cpu().numpy() for p in model.parameters()]

    def step():
        grads()
        opt.step()

    return step, grads


def check_same_gradients(reference, other, name):
    """Raise AssertionError unless ``other``'s loss and gradients match ``reference``'s."""
    (ref_loss, ref_grads), (loss, grads) = reference(), other()
    numpy.testing.assert_allclose(loss, ref_loss, rtol=GRAD_RTOL, err_msg=f"{name}: loss")
    for i, (g, ref) in enumerate(zip(grads, ref_grads)):
        atol = GRAD_ATOL_OF_MAX * float(numpy.abs(ref).max())
        numpy.testing.assert_allclose(g, ref, rtol=GRAD_RTOL, atol=atol,
                                      err_msg=f"{name}: gradient of parameter {i}")

MLP_PAIRS = (("engine", "numpy"), ("engine", "torch"), ("numpy", "torch"))


def profile(step, repeats, top):
    """cProfile the engine step: own time per function (the profiler itself adds ~1 us a call)."""
    import cProfile
    import pstats
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeats):
        step()
    profiler.disable()
    print(f"\nengine step, {repeats} steps under cProfile (tottime = own time, summed):")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


def run_mlp(args, with_torch):
    rng = numpy.random.default_rng(args.seed)
    x = rng.standard_normal((args.batch_size, SIZES[0])).astype(numpy.float32)  # (N, 784)
    y = rng.integers(0, SIZES[-1], args.batch_size)                             # (N,) int64
    weights = init_weights(args.seed)
    makers = {"engine": engine_mlp, "numpy": numpy_mlp}
    if with_torch:
        makers["torch"] = torch_mlp
    impls = {name: make(weights, x, y) for name, make in makers.items()}
    for name, (_, grads) in impls.items():
        if name != "numpy":
            check_same_gradients(impls["numpy"][1], grads, name)
    print(f"mlp: gradients agree with the hand-written NumPy step (rtol={GRAD_RTOL}, "
          f"atol={GRAD_ATOL_OF_MAX} * max|grad|): " + ", ".join(n for n in impls if n != "numpy"))
    times = measure.time_in_turns({name: step for name, (step, _) in impls.items()}, args.repeats, args.warmup, args.block)
    results = {name: measure.summarize(t) for name, t in times.items()}
    ratio = measure.ratios(results, MLP_PAIRS)
    measure.print_table(f"MLP {'-'.join(map(str, SIZES))} step, batch {args.batch_size}", results, ratio)
    if args.profile:
        profile(impls["engine"][0], args.repeats, args.profile)
    return results, ratio


def run_gpu(args, with_torch):
    if not backend.cupy_available():
        print("gpu: skipped, no CuPy or no GPU")
        return {"skipped": "no CuPy or no NVIDIA GPU on this machine"}
    import cupy
    batch = 1024
    rng = numpy.random.default_rng(args.seed)
    x = rng.standard_normal((batch, SIZES[0])).astype(numpy.float32)
    y = rng.integers(0, SIZES[-1], batch)
    weights = init_weights(args.seed)
    impls = {"engine_cuda": engine_mlp(weights, x, y, "cuda"), "engine_cpu": engine_mlp(weights, x, y, "cpu")}
    torch_cuda = False
    if with_torch:
        import torch
        torch_cuda = torch.cuda.is_available()
        if torch_cuda:
            impls["torch_cuda"] = torch_mlp(weights, x, y, "cuda")
    for name in impls:
        if name != "engine_cpu":
            check_same_gradients(impls["engine_cpu"][1], impls[name][1], name)
    # step() ends with loss.item(), which waits for the GPU: each timed step is complete
    times = measure.time_in_turns({n: s for n, (s, _) in impls.items()}, args.repeats, args.warmup, args.block)
    results = {name: measure.summarize(t) for name, t in times.items()}
    ratio = measure.ratios(results, [("engine_cuda", "engine_cpu"), ("engine_cuda", "torch_cuda")])
    measure.print_table(f"GPU: MLP {'-'.join(map(str, SIZES))} step, batch {batch}", results, ratio)
    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return {"card": name, "cupy": cupy.__version__, "batch_size": batch, "results": results,
            "ratios": ratio, "torch_cuda": torch_cuda}
