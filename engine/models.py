"""The model zoo shared by tutorials, strategies and benchmarks.

    model = models.build("mlp")           # nn.Sequential 784-128-10 with ReLU
    model = models.build("linear")        # 784 -> 10 (MATH E2)

Every model is an ``nn.Sequential`` (MATH F2: a composition of layers), so a pipeline
can cut it into stages with a slice.
"""
from engine import nn


def linear(in_features=784, num_classes=10):
    """One affine layer z = W x + b (MATH F1): multinomial logistic regression (MATH E2)."""
    return nn.Sequential(nn.Linear(in_features, num_classes))


def mlp(sizes=(784, 128, 10)):
    """Affine layers with ReLU between them: f = f_N o ... o f_1 (MATH F2)."""
    if len(sizes) < 2:
        raise ValueError(f"mlp: need at least input and output sizes, got {sizes}")
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


MODELS = {"linear": linear, "mlp": mlp}


def build(name, **kwargs):
    """The model called ``name`` (a key of MODELS), built with its default sizes unless given."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: choose one of {sorted(MODELS)}")
    return MODELS[name](**kwargs)
