"""The epoch section of benchmarks/engine.py: one epoch of the MLP 784-128-10 on full
Fashion-MNIST (60,000 images, batch 64, lr 0.1), data shuffling and batching included, engine
vs PyTorch, on the same shuffled batches from the same weights; also the mean training loss of
each (equal up to float32 rounding).
"""
import time

import numpy

import engine
import engine.functional as F
from benchmarks import measure
from engine import data, models, optim

EPOCH_SIZES, EPOCH_LR, EPOCH_BATCH = (784, 128, 10), 0.1, 64


def epoch_runs(X, y, seed, with_torch):
    """{name: run_epoch() -> mean loss}: the same shuffled batches and initial weights."""
    order = numpy.random.default_rng(seed).permutation(len(X))
    batches = [order[i:i + EPOCH_BATCH] for i in range(0, len(X), EPOCH_BATCH)]
    engine.manual_seed(seed)
    model = models.mlp(EPOCH_SIZES)
    start = [p.data.copy() for p in model.parameters()]
    opt = optim.SGD(model.parameters(), lr=EPOCH_LR)

    def engine_epoch():
        total = 0.0
        for idx in batches:
            loss = F.cross_entropy(model(engine.Tensor(X[idx])), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        return total / len(X)

    runs = {"engine": engine_epoch}
    if with_torch:
        import torch
        tmodel = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
        with torch.no_grad():
            for tp, w in zip(tmodel.parameters(), start):
                tp.copy_(torch.from_numpy(w))
        topt = torch.optim.SGD(tmodel.parameters(), lr=EPOCH_LR)
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y)

        def torch_epoch():
            total = 0.0
            for idx in batches:
                i = torch.from_numpy(idx)
                loss = torch.nn.functional.cross_entropy(tmodel(Xt[i]), yt[i])
                topt.zero_grad()
                loss.backward()
                topt.step()
                total += loss.item() * len(idx)
            return total / len(X)

        runs["torch"] = torch_epoch
    return runs


def time_epochs(runs, repeats):
    """Each epoch function ``repeats`` times, in turns; (seconds per epoch, first mean loss)."""
    times, losses = {n: [] for n in runs}, {}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            loss = run()
            times[name].append(time.perf_counter() - start)
            losses.setdefault(name, loss)
    return times, losses


def run_epoch(args, with_torch):
    try:
        X, y, _, _ = data.load_fashion_mnist()
    except (OSError, ValueError) as exc:
        print(f"epoch: skipped, Fashion-MNIST not found ({exc})")
        return {"skipped": f"Fashion-MNIST not found: {exc}"}
    X = (X - 0.5) / 0.5
    if args.quick:
        X, y = X[:2048], y[:2048]
    runs = epoch_runs(X, y, args.seed, with_torch)
    times, losses = time_epochs(runs, args.epoch_repeats)
    results = {name: measure.summarize(t) for name, t in times.items()}
    ratio = measure.ratios(results, [("engine", "torch")])
    measure.print_table(f"one epoch, MLP 784-128-10, Fashion-MNIST ({len(X):,} images), batch {EPOCH_BATCH}, "
                f"lr {EPOCH_LR} (ms per epoch)", results, ratio)
    print("mean training loss of the first epoch: " + ", ".join(f"{n} {v:.5f}" for n, v in losses.items()))
    return {"images": len(X), "batch_size": EPOCH_BATCH, "lr": EPOCH_LR, "sizes": list(EPOCH_SIZES),
            "results": results, "ratios": ratio, "first_epoch_mean_loss": losses}
