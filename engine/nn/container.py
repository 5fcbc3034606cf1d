"""Sequential: a model as a composition of layers, f = f_N o ... o f_1  (MATH F2)."""
from engine.nn.module import Module


class Sequential(Module):
    """Apply layers in order. Indexable and sliceable (``model[1:3]`` is a Sequential
    sharing the same layers, and keeping their names "1", "2"), which is how a
    pipeline cuts a model into stages whose state dicts fit back into the whole."""

    def __init__(self, *layers, names=None):
        for layer in layers:
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential: expected Modules, got {type(layer).__name__}")
        self.layers = list(layers)
        self.names = list(names) if names is not None else [str(i) for i in range(len(layers))]

    def named_children(self):
        return list(zip(self.names, self.layers))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(*self.layers[index], names=self.names[index])
        return self.layers[index]

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)
