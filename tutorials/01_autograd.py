"""Tutorial 1: the chain rule by hand, then by the engine (MATH F1, F2, F3, F5, F4, F6).

    python tutorials/01_autograd.py
    mpirun -n 4 python -m mpi4py tutorials/01_autograd.py    # every rank computes, rank 0 prints

Nothing is distributed yet: under mpirun each rank does the same work on the same
numbers, and only rank 0 prints. What this tutorial builds, in steps:

  1. A two-layer network on a batch of N = 4 samples, each sample a row of X (MATH F1, F2):
         z1 = x W1^T + b1,   h = relu(z1),   z2 = h W2^T + b2
     and two losses on z2: cross-entropy on softmax(z2) (F3, F5) and mean squared error (F4).
  2. The backward pass by hand in NumPy, one chain-rule step per line (MATH F6), with shapes.
     Only the first step, dL/dz2, depends on the loss; the layers' steps are the same for both.
  3. The same network in engine Tensors: ``loss.backward()`` must give the same numbers.
  4. Finite differences: one entry by hand, then ``gradcheck`` on every entry.
  5. micrograd's ``b = a + a; c = b + b``: why backward walks the graph in a topological order.
  6. PASS (exit code 0) or FAIL (exit code 1).

Everything is float64, so hand and engine agree to ~1e-15 and finite differences to ~1e-9.
"""
import sys

import numpy as np

from engine import Tensor, gradcheck
import engine.functional as F
from engine.autograd import topological_order
from engine.process import configure_process
from engine.threads import launched_by_mpi

N, D, H, C = 4, 3, 5, 2  # samples, input features, hidden units, classes (all different on purpose)


def mpi_rank():
    """This process's rank under mpirun, 0 when started as a plain ``python`` script."""
    if not launched_by_mpi():
        return 0
    from mpi4py import MPI
    return MPI.COMM_WORLD.Get_rank()


RANK = mpi_rank()


def say(*args):
    if RANK == 0:
        print(*args, flush=True)


def show(name, formula, array, math="", values=False):
    """One line of the derivation: name = formula, the MATH ID, the shape; the numbers if asked."""
    shape = str(tuple(array.shape))
    scalar = f"  {array.item():.6f}" if array.size == 1 else ""
    say(f"  {name:<7} = {formula:<40} {math:<4} {shape:>7}{scalar}")
    if values and array.size > 1:
        say("            " + np.array2string(array, precision=4, suppress_small=True)
            .replace("\n", "\n            "))
    return array


# ---- 1. the network and its data ----------------------------------------------------------
def make_problem(seed=0):
    """Inputs X (N, D), labels y (N,), one-hot targets T (N, C), and the four parameters."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D))
    y = np.array([0, 1, 1, 0])
    T = np.eye(C)[y]                             # (N, C) one-hot: the MSE target
    params = {"W1": 0.5 * rng.standard_normal((H, D)), "b1": 0.1 * rng.standard_normal(H),
              "W2": 0.5 * rng.standard_normal((C, H)), "b2": 0.1 * rng.standard_normal(C)}
    return X, y, T, params


def softmax(z):
    """MATH F3, row by row; subtracting the row's max changes nothing and avoids overflow."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def forward_by_hand(X, y, T, p, loss):
    say("forward (MATH F1, F2); row i of X is one sample x_i, so z = W x + b becomes z = x W^T + b")
    z1 = show("z1", "X @ W1.T + b1", X @ p["W1"].T + p["b1"], "F1")          # (N, H)
    h = show("h", "relu(z1) = max(z1, 0)", np.maximum(z1, 0), "F1")            # (N, H)
    z2 = show("z2", "h @ W2.T + b2", h @ p["W2"].T + p["b2"], "F2", values=True)            # (N, C)
    if loss == "cross-entropy":
        yhat = show("yhat", "softmax(z2)", softmax(z2), "F3", values=True)
        L = show("L", "-(1/N) sum_i log yhat[i, y_i]", -np.log(yhat[np.arange(N), y]).mean(), "F5")
    else:
        yhat = z2
        L = show("L", "mean of (z2 - T)^2 over all N*C entries", ((z2 - T) ** 2).mean(), "F4")
    return {"X": X, "z1": z1, "h": h, "z2": z2, "yhat": yhat, "L": L}


def backward_by_hand(f, y, T, p, loss):
    """MATH F6, from the loss down. Each line is (gradient arriving) x (local derivative).

    A weight's gradient sums over the batch: dL/dW = sum_i (dL/dz_i) x_i^T = (dL/dz)^T X.
    """
    say("backward (MATH F6), from the loss down to the first layer")
    g = {}
    if loss == "cross-entropy":  # d/dz2 of -log softmax(z2)[y] is softmax(z2) - onehot(y); 1/N from the mean
        g["z2"] = show("dL/dz2", "(yhat - onehot(y)) / N", (f["yhat"] - np.eye(C)[y]) / N, "F6", values=True)
    else:                        # d/dz2 of mean (z2 - T)^2 over N*C entries
        g["z2"] = show("dL/dz2", "2 (z2 - T) / (N C)", 2 * (f["z2"] - T) / (N * C), "F6", values=True)
    g["W2"] = show("dL/dW2", "dL/dz2.T @ h          (dz2/dW2 = h)", g["z2"].T @ f["h"], "F6", values=True)
    g["b2"] = show("dL/db2", "sum_i dL/dz2[i]       (dz2/db2 = 1)", g["z2"].sum(axis=0), "F6", values=True)
    g["h"] = show("dL/dh", "dL/dz2 @ W2           (dz2/dh = W2)", g["z2"] @ p["W2"], "F6")
    g["z1"] = show("dL/dz1", "dL/dh * (z1 > 0)      (relu' = 0 or 1)", g["h"] * (f["z1"] > 0), "F6")
    g["W1"] = show("dL/dW1", "dL/dz1.T @ X          (dz1/dW1 = x)", g["z1"].T @ f["X"], "F6")
    g["b1"] = show("dL/db1", "sum_i dL/dz1[i]       (dz1/db1 = 1)", g["z1"].sum(axis=0), "F6", values=True)
    return g


# ---- 3. the same network in the engine ----------------------------------------------------
def engine_loss(X, W1, b1, W2, b2, y, T, loss, keep=None):
    """The network written with engine Tensors; ``keep`` collects the intermediate tensors."""
    z1 = F.linear(X, W1, b1)  # (N, H)
    h = F.relu(z1)            # (N, H)
    z2 = F.linear(h, W2, b2)  # (N, C)
    if keep is not None:
        for name, t in (("z1", z1), ("h", h), ("z2", z2)):
            t.retain_grad()   # non-leaves drop .grad after backward unless asked to keep it
            keep[name] = t
    return F.cross_entropy(z2, y) if loss == "cross-entropy" else F.mse_loss(z2, T)


def compare_with_engine(X, y, T, p, hand, loss):
    params = {k: Tensor(v, requires_grad=True) for k, v in p.items()}  # float64 arrays stay float64
    inner = {}
    L = engine_loss(Tensor(X), params["W1"], params["b1"], params["W2"], params["b2"],
                    Tensor(y), Tensor(T), loss, keep=inner)
    L.backward()
    say("hand vs engine (loss.backward()), largest |difference|:")
    ok = True
    for name, t in list(params.items()) + list(inner.items()):
        diff = np.abs(hand[name] - t.grad).max()
        good = np.allclose(hand[name], t.grad, rtol=1e-10, atol=1e-12)
        ok &= good
        say(f"  dL/d{name:<3} {str(tuple(t.grad.shape)):>7}  {diff:.1e}  {'ok' if good else 'DIFFERENT'}")
    return ok


# ---- 4. finite differences ----------------------------------------------------------------
def finite_differences(X, y, T, p, hand, loss, eps=1e-6):
    """dL/dW1[0, 0] ~ (L(W1 + eps e_00) - L(W1 - eps e_00)) / (2 eps), then every entry."""
    def L_at(W1):
        z2 = np.maximum(X @ W1.T + p["b1"], 0) @ p["W2"].T + p["b2"]
        if loss == "cross-entropy":
            return -np.log(softmax(z2)[np.arange(N), y]).mean()
        return ((z2 - T) ** 2).mean()

    bump = np.zeros_like(p["W1"])
    bump[0, 0] = eps
    numeric = (L_at(p["W1"] + bump) - L_at(p["W1"] - bump)) / (2 * eps)
    say(f"finite differences: dL/dW1[0,0] by hand {hand['W1'][0, 0]:.10f}, "
        f"(L(W1+eps) - L(W1-eps)) / 2eps = {numeric:.10f}")
    one_ok = abs(numeric - hand["W1"][0, 0]) < 1e-7

    # gradcheck nudges each entry of its inputs in place, so give it copies (Tensor(array) shares memory)
    inputs = [Tensor(X)] + [Tensor(p[k].copy(), requires_grad=True) for k in ("W1", "b1", "W2", "b2")]
    try:  # every entry of every parameter, through the engine's backward
        gradcheck(lambda X_, W1, b1, W2, b2: engine_loss(X_, W1, b1, W2, b2, Tensor(y), Tensor(T), loss),
                  inputs)
        say(f"  gradcheck: all {sum(v.size for v in p.values())} parameter entries agree with backward()")
        all_ok = True
    except AssertionError as exc:
        say(f"  gradcheck FAILED: {exc}")
        all_ok = False
    return one_ok and all_ok


# ---- 5. why a topological sort ------------------------------------------------------------
def push_running_total(node, g, total):
    """A naive recursive backward: add g to the node's total, then push the node's *running
    total* down, once per use. A node used twice pushes twice, the second time with
    gradient it already pushed once: gradients are counted more than once."""
    total[id(node)] = total.get(id(node), 0.0) + g
    if node.grad_fn is not None:  # grad_fn: the op that made this tensor (None for a leaf)
        for t, tg in zip(node.grad_fn.inputs, node.grad_fn.backward(np.asarray(total[id(node)]))):
            push_running_total(t, tg, total)


def push_each_path(node, g, total, visits):
    """A correct recursive backward: push only what just arrived. It sums over every path
    from the output to the leaf, which is right, but the number of paths doubles with
    every ``b = a + a``: k doublings cost 2^(k+1) - 1 visits instead of k + 1."""
    visits[0] += 1
    total[id(node)] = total.get(id(node), 0.0) + g
    if node.grad_fn is not None:
        for t, tg in zip(node.grad_fn.inputs, node.grad_fn.backward(np.asarray(g))):
            push_each_path(t, tg, total, visits)


def micrograd_example():
    say("micrograd's example: a = 3; b = a + a; c = b + b, so c = 4a and dc/da = 4")
    a = Tensor(3.0, requires_grad=True)
    b = a + a
    c = b + b
    b.retain_grad()
    naive = {}
    push_running_total(c, 1.0, naive)
    paths, visits = {}, [0]
    push_each_path(c, 1.0, paths, visits)
    order = topological_order(c)
    names = {id(a): "a", id(b): "b", id(c): "c"}
    c.backward()  # the engine: every node's gradient is complete before it is pushed
    say(f"  naive walk pushing running totals: dc/da = {naive[id(a)]:.0f}   "
        f"(the first 1 to reach b is pushed down twice)")
    say(f"  walk over every path:              dc/da = {paths[id(a)]:.0f}   ({visits[0]} node visits)")
    say(f"  engine, topological order {[names[id(t)] for t in order]}: "
        f"dc/db = {b.grad.item():.0f}, dc/da = {a.grad.item():.0f}   (3 node visits)")

    x = x0 = Tensor(1.0, requires_grad=True)
    for _ in range(10):
        x = x + x
    paths, visits = {}, [0]
    push_each_path(x, 1.0, paths, visits)
    x.backward()
    say(f"  10 doublings: every path costs {visits[0]} visits, the topological order "
        f"{len(topological_order(x))}; both give dx/dx0 = {x0.grad.item():.0f} = 2^10")
    return a.grad.item() == 4 and b.grad.item() == 2 and naive[id(a)] != 4 and x0.grad.item() == 2 ** 10


def main():
    configure_process()  # under mpirun: one BLAS thread per rank (engine/process.py)
    X, y, T, p = make_problem()
    say(f"network: D={D} inputs -> H={H} hidden (relu) -> C={C} outputs; batch N={N}; float64")
    say(f"  W1 {p['W1'].shape}  b1 {p['b1'].shape}  W2 {p['W2'].shape}  b2 {p['b2'].shape}")
    checks = {}
    for loss in ("cross-entropy", "mean squared error"):
        say(f"\n=== loss: {loss} ===")
        f = forward_by_hand(X, y, T, p, loss)
        hand = backward_by_hand(f, y, T, p, loss)
        checks[f"{loss}: hand == engine"] = compare_with_engine(X, y, T, p, hand, loss)
        checks[f"{loss}: finite differences"] = finite_differences(X, y, T, p, hand, loss)
    say()
    checks["micrograd: dc/da = 4 via topological order"] = micrograd_example()

    say()
    for name, ok in checks.items():
        say(f"  {'ok  ' if ok else 'FAIL'}  {name}")
    passed = all(checks.values())
    say("PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
