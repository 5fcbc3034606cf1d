"""Data for mpigrad: MNIST / Fashion-MNIST loaders, the MATH E1/E3/E4 synthetic sets,
mini-batching (``DataLoader``) and the data-parallel split (``shard``).

    from engine import data
    X_train, y_train, X_test, y_test = data.load_mnist()   # bundled 4,000 / 1,000 real-MNIST subset
    X_train, y_train = data.shard(X_train, y_train, rank, world_size)
    for xb, yb in data.DataLoader(X_train, y_train, batch_size=100, seed=0):
        ...
"""
from engine.data.loader import DataLoader, shard
from engine.data.mnist import load_dataset, load_fashion_mnist, load_mnist
from engine.data.synthetic import (
    THETA0_E4,
    TRUE_THETA_E4,
    binary_classification_e3,
    linear_regression_e1,
    linear_regression_e4,
)

__all__ = [
    "load_mnist", "load_fashion_mnist", "load_dataset", "DataLoader", "shard",
    "linear_regression_e1", "binary_classification_e3", "linear_regression_e4",
    "THETA0_E4", "TRUE_THETA_E4",
]
