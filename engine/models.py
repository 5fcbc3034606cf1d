"""The model zoo shared by tutorials, strategies and benchmarks.

    model = models.build("mlp")           # nn.Sequential 784-128-10 with ReLU
    model = models.build("linear")        # 784 -> 10 (MATH E2)
    model = models.build("lenet5")        # 2 conv + 3 affine layers, input (N, 1, 28, 28)
    model = models.build("lenet300")      # LeNet-300-100, Deep Compression's MLP
    model = models.build("mlp7")          # 7 affine layers 784-128-127-...-123-10, for pipelines

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


def mlp7():
    """Seven affine layers 784-128-127-126-125-124-123-10 with ReLU between them: 13 modules
    in the Sequential, 181,105 parameters. The model of the pipeline and tensor-parallel
    benchmarks: enough layers to cut into several stages (MATH F2), and hidden widths chosen
    so that a column split over 2 or 4 ranks meets uneven blocks instead of hiding them
    (127, 125, 123 are odd; 126 is not a multiple of 4; only 128 and 124 split evenly)."""
    return mlp((784, 128, 127, 126, 125, 124, 123, 10))


def lenet300():
    """LeNet-300-100 (LeCun et al., 1998): affine 784-300-100-10 with ReLU, 266,610 parameters.
    The fully connected model of Deep Compression's MNIST results (Han et al., 2016: 40x smaller,
    no accuracy lost), beside LeNet-5 (MATH A7)."""
    return mlp((784, 300, 100, 10))


MODELS = {"linear": linear, "mlp": mlp, "lenet5": lenet5, "mlp7": mlp7, "lenet300": lenet300}


def build(name, **kwargs):
    """The model called ``name`` (a key of MODELS), built with its default sizes unless given."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: choose one of {sorted(MODELS)}")
    return MODELS[name](**kwargs)
