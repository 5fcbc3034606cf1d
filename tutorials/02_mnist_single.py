"""Tutorial 2: train on MNIST in one process (MATH E2, F1-F3, F5, F7, F8).

    python tutorials/02_mnist_single.py
    mpirun -n 4 python -m mpi4py tutorials/02_mnist_single.py
    python tutorials/02_mnist_single.py --dataset fashion-mnist --plot loss.png

Two models, each trained with plain SGD on cross-entropy:

    linear   784 -> 10             lr 0.01, batch 100   (MATH E2 exactly)
    mlp      784 -> 128 -> 10      lr 0.1,  batch 64    (relu between the two layers)

Pixels are scaled to (x - 0.5) / 0.5, i.e. into [-1, 1] (E2). One step of training is

    logits = model(xb)                      # (B, 10)    F1, F2
    loss   = F.cross_entropy(logits, yb)    # ()         F3 + F5, the mean over the batch
    loss.backward()                         #            F6, tutorial 01
    opt.step()                              #            theta <- theta - lr * grad   (F7)

and each epoch prints the mean loss over its samples (F8) and the test accuracy.

Under mpirun nothing is shared yet: every rank trains its own copy, with the same seed on
the same data, and only rank 0 prints. At the end the ranks compare a SHA-256 of their
parameters: if every rank holds bit-identical parameters, the seed alone fixes the model.
That is the precondition of data parallelism (MATH A1: same initial theta everywhere),
which the next tutorials build on. (Bit-identical also needs the same BLAS thread count,
since threads split a matrix product's sums differently: a plain ``python`` run may use
several BLAS threads where each mpirun rank uses one, so its last digits, and its hash,
can differ from the mpirun run's.)

The default data is the bundled MNIST subset (4,000 train / 1,000 test images), so the
run takes seconds; --dataset fashion-mnist or --data-path DIR use a full 60,000-image set.
Checks, each PASS or FAIL: identical parameters on every rank, and (on the bundled subset
with the default settings) test accuracy of at least 0.85 (linear) and 0.75 (mlp).
"""
import argparse
import hashlib
import sys
import time

import numpy as np

from engine import Tensor, data, manual_seed, models, no_grad, optim
import engine.functional as F
from engine.process import configure_process
from engine.threads import launched_by_mpi

# Per model: the network, its SGD settings, and the floor its final test accuracy on the bundled
# subset must reach after 10 epochs with them, whatever the seed. Over seeds 0-39 the linear
# model ends between 0.869 and 0.885 (mean 0.875); the MLP's mean is 0.90, but at lr 0.1 its
# test accuracy swings by up to 0.1 from one epoch to the next (seed 1: 0.92, 0.79, 0.79), so
# its worst final epoch is 0.786 and its floor sits lower. PyTorch, given the same initial
# parameters and batches (one BLAS thread each), prints the same four decimals: the swing is
# SGD's, not the engine's.
# The networks themselves come from the zoo, engine/models.py: linear 784-10, mlp 784-128-10.
SETTINGS = {
    "linear": dict(lr=0.01, batch_size=100, floor=0.85),
    "mlp": dict(lr=0.1, batch_size=64, floor=0.75),
}
DEFAULT_EPOCHS = 10
# MATH E2 as reported for the linear model on the full 60,000-image MNIST (epochs 1 and 10).
E2_REPORTED = {1: 0.6957, 10: 0.3161}


def mpi_world():
    """(rank, size, comm) under mpirun; (0, 1, None) when started as a plain ``python`` script."""
    if not launched_by_mpi():
        return 0, 1, None
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    return comm.Get_rank(), comm.Get_size(), comm


RANK, WORLD_SIZE, COMM = mpi_world()


def say(*args):
    if RANK == 0:
        print(*args, flush=True)


def normalise(X):
    """(x - 0.5) / 0.5: pixels from [0, 1] to [-1, 1] (MATH E2)."""
    return (X - 0.5) / 0.5


def accuracy(model, X, y):
    """Fraction of rows of X whose largest logit is the label."""
    with no_grad():
        predicted = model(Tensor(X)).argmax(axis=1).numpy()  # (n,)
    return float((predicted == y).mean())


def train_one_epoch(model, opt, loader):
    """One pass over the training set; returns the mean loss over its samples (MATH F8)."""
    total, count = 0.0, 0
    for xb, yb in loader:                           # xb (B, 784) float32, yb (B,) int64
        loss = F.cross_entropy(model(xb), yb)       # () mean over the batch (F3, F5)
        opt.zero_grad()
        loss.backward()                             # F6
        opt.step()                                  # F7: theta <- theta - lr * grad
        total += loss.item() * len(yb)
        count += len(yb)
    return total / count


def parameter_hash(model):
    """SHA-256 of every parameter's bytes, in ``named_parameters`` order."""
    digest = hashlib.sha256()
    for _, p in model.named_parameters():
        digest.update(np.ascontiguousarray(p.detach().numpy()).tobytes())
    return digest.hexdigest()


def train(name, args, X_train, y_train, X_test, y_test):
    """Train one model from seed ``args.seed``; print a row per epoch; return what was measured."""
    spec = SETTINGS[name]
    lr = args.lr if args.lr is not None else spec["lr"]
    batch_size = args.batch_size if args.batch_size is not None else spec["batch_size"]
    manual_seed(args.seed)                          # the same initial parameters on every rank
    model = models.build(name)
    opt = optim.SGD(model.parameters(), lr=lr)
    loader = data.DataLoader(X_train, y_train, batch_size=batch_size, shuffle=True, seed=args.seed)

    n_params = sum(p.numel() for p in model.parameters())
    say(f"\n{name}:\n  " + repr(model).replace("\n", "\n  "))
    say(f"  {n_params:,} parameters; SGD lr {lr}, batch {batch_size}, {len(loader)} steps per epoch")
    say(f"  {'Epoch':>5} | {'mean loss':>9} | {'test acc':>8} | {'elapsed':>7}")
    say(f"  {'-' * 5}-+-{'-' * 9}-+-{'-' * 8}-+-{'-' * 7}")
    losses, accuracies = [], []
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        losses.append(train_one_epoch(model, opt, loader))
        accuracies.append(accuracy(model, X_test, y_test))
        elapsed = time.perf_counter() - start
        say(f"  {epoch:>5} | {losses[-1]:>9.4f} | {accuracies[-1]:>8.4f} | {elapsed:>6.2f}s")
    return dict(losses=losses, accuracies=accuracies, hash=parameter_hash(model),
                defaults=(lr, batch_size) == (spec["lr"], spec["batch_size"]))


def check_identical(name, digest):
    """All ranks gather every rank's hash; True when they are all the same."""
    hashes = COMM.allgather(digest) if COMM is not None else [digest]
    same = len(set(hashes)) == 1
    if WORLD_SIZE == 1:
        say(f"  {name}: one process, nothing to compare (sha256 {digest[:16]}...); "
            f"run under mpirun -n 4 to compare 4 copies")
    elif same:
        say(f"  {name}: all {WORLD_SIZE} ranks hold bit-identical parameters (sha256 {digest[:16]}...): "
            f"the same seed gives the same model everywhere (MATH A1's precondition)")
    else:
        say(f"  {name}: ranks hold DIFFERENT parameters: " +
            ", ".join(f"rank {r} {h[:12]}" for r, h in enumerate(hashes)))
    return same


def plot(results, path, title):
    import matplotlib
    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in results.items():
        epochs = range(1, len(r["losses"]) + 1)
        ax.plot(epochs, r["losses"], marker="o", label=f"{name} (test acc {r['accuracies'][-1]:.3f})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean training loss (cross-entropy)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    say(f"loss curve written to {path}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--model", choices=["linear", "mlp", "both"], default="both")
    parser.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist",
                        help="mnist without --data-path is the bundled 4,000/1,000 subset")
    parser.add_argument("--data-path", default=None,
                        help="a directory of the four IDX files (or an .npz) of the chosen dataset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=None, help="default: per model (linear 0.01, mlp 0.1)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default: per model (linear 100, mlp 64)")
    parser.add_argument("--plot", metavar="FILE", default=None, help="write the loss curves to this PNG")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    return args


def main(argv=None):
    configure_process()  # under mpirun: one BLAS thread per rank (engine/process.py)
    args = parse_args(argv)
    X_train, y_train, X_test, y_test = data.load_dataset(args.dataset, args.data_path)
    X_train, X_test = normalise(X_train), normalise(X_test)  # (n, 784) float32 in [-1, 1]
    bundled = args.dataset == "mnist" and args.data_path is None
    what = "bundled MNIST subset" if bundled else args.dataset
    say(f"{what}: {len(X_train):,} training and {len(X_test):,} test images, pixels (x - 0.5) / 0.5")
    if WORLD_SIZE > 1:
        say(f"{WORLD_SIZE} ranks, each training its own copy with seed {args.seed}; rank 0 prints")

    names = ["linear", "mlp"] if args.model == "both" else [args.model]
    results = {name: train(name, args, X_train, y_train, X_test, y_test) for name in names}
    if "linear" in results and results["linear"]["defaults"]:
        ours = ", ".join(f"{results['linear']['losses'][e - 1]:.4f} after epoch {e}"
                         for e in E2_REPORTED if e <= args.epochs)
        say(f"\nMATH E2, the linear model on the full 60,000-image MNIST: mean loss "
            f"{E2_REPORTED[1]} after epoch 1, {E2_REPORTED[10]} after epoch 10; here ({what}): {ours}")
    if args.plot and RANK == 0:
        plot(results, args.plot, f"Tutorial 2: {what}, seed {args.seed}")

    say("\nchecks")
    checks = {}
    for name, r in results.items():
        checks[f"{name}: identical parameters on all {WORLD_SIZE} rank(s)"] = check_identical(name, r["hash"])
    for name, r in results.items():
        floor, final = SETTINGS[name]["floor"], r["accuracies"][-1]
        if bundled and args.epochs >= DEFAULT_EPOCHS and r["defaults"]:
            checks[f"{name}: test accuracy {final:.4f} >= {floor}"] = final >= floor
        else:
            say(f"  {name}: accuracy floor {floor} not checked: it holds for the bundled subset with "
                f"{DEFAULT_EPOCHS} epochs and the default lr and batch size (final accuracy {final:.4f})")
    for name, ok in checks.items():
        say(f"  {'ok  ' if ok else 'FAIL'}  {name}")
    passed = all(checks.values())
    say("PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
