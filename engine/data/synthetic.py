"""Small synthetic data sets for the worked examples of MATH.md (E1, E3, E4).

Each function is deterministic: the same ``seed`` gives the same arrays, drawn from
``np.random.default_rng(seed)``, so every rank of an mpirun job can build the full set
and then take its own ``shard`` (MATH A1). Features and targets are float32 unless
``dtype=`` says otherwise. Targets are column vectors (n, 1) so that ``X @ theta`` with
theta (d, 1) lines up with them without broadcasting surprises.
"""
import numpy as np

THETA0_E4 = (0.1, 0.2, 0.3, 0.4, 0.5)      # MATH E4: initial parameters of the 5-parameter model
TRUE_THETA_E4 = (1.0, -2.0, 3.0, -4.0, 5.0)  # the parameters the E4 data were generated with


def linear_regression_e1(n=100, theta=3.0, noise=0.1, seed=0, dtype=np.float32):
    """MATH E1: data for J(theta) = 1/2 sum_i (y_i - theta x_i)^2 with a scalar theta.

    y_i = theta * x_i + noise * eps_i,  x_i ~ U(-1, 1), eps_i ~ N(0, 1).
    Returns X (n, 1), y (n, 1). The least-squares answer is
    theta* = sum x_i y_i / sum x_i^2 (close to ``theta``); E1 checks that two nodes holding
    half the data each, started from theta_0 = 0, reach the same theta as one node.
    """
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(n, 1))                  # (n, 1)
    y = theta * x + noise * rng.standard_normal((n, 1))      # (n, 1)
    return x.astype(dtype), y.astype(dtype)


def binary_classification_e3(seed=0, dtype=np.float32):
    """MATH E3: 100 samples with 2 features, 80/20 train/test split, for one sigmoid unit.

    Two Gaussian clouds of 50 points each, N((-1, -1), I) labelled 0 and N((+1, +1), I)
    labelled 1. They overlap a little, so test accuracy is high but not always 100 %.
    The 100 rows are shuffled, then the first 80 train and the last 20 test.
    Returns X_train (80, 2), y_train (80, 1), X_test (20, 2), y_test (20, 1); labels are
    0.0 / 1.0 in ``dtype``, ready for binary cross-entropy (MATH F5).
    """
    rng = np.random.default_rng(seed)
    labels = np.repeat([0.0, 1.0], 50)                                # (100,)
    X = rng.standard_normal((100, 2)) + (2.0 * labels - 1.0)[:, None]  # (100, 2) centres -1 / +1
    order = rng.permutation(100)
    X, y = X[order].astype(dtype), labels[order, None].astype(dtype)  # (100, 2), (100, 1)
    return X[:80], y[:80], X[80:], y[80:]


def linear_regression_e4(num_nodes=10, samples_per_node=1000, noise=0.1, seed=0, dtype=np.float32):
    """MATH E4: a 5-parameter linear model, data for ``num_nodes`` nodes of ``samples_per_node``.

    y = X theta_true + noise * eps, X ~ N(0, I_5), theta_true = TRUE_THETA_E4 (no bias).
    Returns X (num_nodes * samples_per_node, 5) and y (num_nodes * samples_per_node, 1),
    laid out node after node, so ``shard(X, y, k, num_nodes)`` is exactly node k's data.
    Training starts from THETA0_E4 = [0.1, 0.2, 0.3, 0.4, 0.5] with lr 0.1 (sync SGD, F10).
    """
    if num_nodes < 1 or samples_per_node < 1:
        raise ValueError(f"num_nodes and samples_per_node must be >= 1, got {num_nodes}, {samples_per_node}")
    rng = np.random.default_rng(seed)
    n = num_nodes * samples_per_node
    X = rng.standard_normal((n, 5))                                     # (n, 5)
    y = X @ np.array(TRUE_THETA_E4)[:, None] + noise * rng.standard_normal((n, 1))  # (n, 1)
    return X.astype(dtype), y.astype(dtype)
