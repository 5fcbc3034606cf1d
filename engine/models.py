"""The model zoo shared by tutorials, strategies and benchmarks.

    model = models.build("mlp")           # nn.Sequential 784-128-10 with ReLU
    model = models.build("linear")        # 784 -> 10 (MATH E2)
    model = models.build("lenet5")        # 2 conv + 3 affine layers, input (N, 1, 28, 28)

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


def lenet5(num_classes=10, in_channels=1):
    """LeNet-5 (LeCun et al., 1998) as it is trained today: ReLU and max-pooling in place of
    the original scaled tanh and trainable sub-sampling. Input (N, 1, 28, 28): the first
    convolution pads by 2, which gives the 32 x 32 field of the original.

        conv 5x5, 6 channels, pad 2   (N, 6, 28, 28)    ReLU, max-pool 2   (N, 6, 14, 14)
        conv 5x5, 16 channels         (N, 16, 10, 10)   ReLU, max-pool 2   (N, 16, 5, 5)
        flatten                       (N, 400)
        affine 400 -> 120, ReLU; 120 -> 84, ReLU; 84 -> 10 logits

    61,706 parameters. Trained with SGD (lr 0.01, momentum 0.9, batch 64) it reaches about
    96 % on the bundled MNIST test subset in 10 epochs (tutorials/06_lenet5.py).
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, num_classes))


MODELS = {"linear": linear, "mlp": mlp, "lenet5": lenet5}


def build(name, **kwargs):
    """The model called ``name`` (a key of MODELS), built with its default sizes unless given."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: choose one of {sorted(MODELS)}")
    return MODELS[name](**kwargs)
