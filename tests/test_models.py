"""The model zoo: shapes, layer structure, errors."""
import numpy as np
import pytest

from engine import Tensor, models, nn


def test_linear_is_one_affine_layer_784_to_10():
    model = models.build("linear")
    assert [type(m) for m in model] == [nn.Linear]
    assert model[0].weight.shape == (10, 784)
    assert model(Tensor(np.zeros((5, 784), np.float32))).shape == (5, 10)


def test_mlp_has_relu_between_but_not_after_the_layers():
    model = models.mlp((784, 512, 256, 10))
    assert [type(m) for m in model] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    assert [m.weight.shape for m in model if isinstance(m, nn.Linear)] == [(512, 784), (256, 512), (10, 256)]


def test_unknown_model_names_the_choices():
    with pytest.raises(ValueError, match="unknown model 'resnet'.*linear.*mlp"):
        models.build("resnet")
    with pytest.raises(ValueError, match="mlp"):
        models.mlp((784,))


# ---------------------------------------------------------------- LeNet-5

def test_lenet5_layers_shapes_and_parameter_count():
    model = models.build("lenet5")
    assert [type(m) for m in model] == [nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Conv2d, nn.ReLU, nn.MaxPool2d,
                                        nn.Flatten, nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    assert model[0].weight.shape == (6, 1, 5, 5) and model[3].weight.shape == (16, 6, 5, 5)
    assert sum(p.numel() for p in model.parameters()) == 61_706          # as torch counts it
    assert model(Tensor(np.zeros((3, 1, 28, 28), np.float32))).shape == (3, 10)
    assert "lenet5" in models.MODELS


def test_lenet5_learns_a_small_batch():
    """Thirty momentum-SGD steps on 32 fixed images fit them (the full 10-epoch, >= 95 %
    check is tutorials/06_lenet5.py; lr 0.05 here, since at 0.01 the loss sits near
    log 10 for the first few dozen steps)."""
    from engine import data, manual_seed, optim
    import engine.functional as F
    manual_seed(0)
    X, y, _, _ = data.load_mnist()
    x, y = Tensor(((X[:32] - 0.5) / 0.5).reshape(-1, 1, 28, 28)), y[:32]
    model = models.build("lenet5")
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses   # seed 0: 2.30 -> 1.03


def test_lenet5_slices_into_pipeline_stages():
    model = models.build("lenet5")
    x = Tensor(np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32))
    np.testing.assert_allclose(model[6:](model[:6](x)).data, model(x).data, rtol=1e-6)
