"""Containers of modules: ModuleList (a list whose modules' parameters are found) and
Sequential (a ModuleList that is also the composition f = f_N o ... o f_1, MATH F2).

A Module finds its sub-modules among its attributes, so a plain Python list of layers
would hide their parameters from ``parameters()``, the optimiser and ``state_dict()``;
Module refuses such an attribute and points here. Both containers name their modules
"0", "1", ...: a ModuleList assigned as ``self.layers`` gives parameters named
"layers.0.weight", as in PyTorch.
"""
from engine.nn.module import Module


class ModuleList(Module):
    """``ModuleList(modules=())``: indexable, sliceable, ``len``, iteration, ``append``,
    ``extend``. No ``forward``: the owner decides how its modules are called."""

    def __init__(self, modules=(), names=None):
        # A dict, not a list: the name of each module is kept (a slice of a Sequential keeps
        # "2", "3"), and Module's check against lists of Modules does not apply to it.
        self._modules = {}
        for i, module in enumerate(modules):
            self._add(str(i) if names is None else str(names[i]), module)

    def _add(self, name, module):
        if not isinstance(module, Module):
            raise TypeError(f"{type(self).__name__}: expected Modules, got {type(module).__name__}")
        if name in self._modules:
            raise ValueError(f"{type(self).__name__}: a module is already named {name!r}")
        self._modules[name] = module

    def append(self, module):
        self._add(str(len(self._modules)), module)
        return self

    def extend(self, modules):
        for module in modules:
            self.append(module)
        return self

    def named_children(self):
        return list(self._modules.items())

    def __getitem__(self, index):
        if isinstance(index, slice):  # a new container sharing the modules, renumbered
            return ModuleList(list(self._modules.values())[index])
        return list(self._modules.values())[index]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(list(self._modules.values()))


class Sequential(ModuleList):
    """Apply layers in order. Indexable and sliceable (``model[1:3]`` is a Sequential
    sharing the same layers, and keeping their names "1", "2"), which is how a
    pipeline cuts a model into stages whose state dicts fit back into the whole."""

    def __init__(self, *layers, names=None):
        super().__init__(layers, names)

    def forward(self, x):
        for layer in self._modules.values():
            x = layer(x)
        return x

    def __getitem__(self, index):
        if isinstance(index, slice):
            names = list(self._modules)[index]
            return Sequential(*[self._modules[name] for name in names], names=names)
        return list(self._modules.values())[index]
