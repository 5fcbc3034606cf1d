"""Layers and models (``engine.nn``), named and shaped as in ``torch.nn``."""
from engine.nn import init, utils
from engine.nn.activation import ReLU, Sigmoid, Tanh
from engine.nn.container import ModuleList, Sequential
from engine.nn.conv import AvgPool2d, Conv2d, MaxPool2d
from engine.nn.linear import Linear
from engine.nn.module import Module, Parameter
from engine.nn.reshaping import Dropout, Flatten

__all__ = ["init", "utils", "Module", "Parameter", "Linear", "ReLU", "Sigmoid", "Tanh",
           "ModuleList", "Sequential", "Flatten", "Dropout", "Conv2d", "MaxPool2d", "AvgPool2d"]
