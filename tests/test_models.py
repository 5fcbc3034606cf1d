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
