"""The LeNet-5 section of benchmarks/engine.py: one momentum-SGD step of engine.models.lenet5
at batch 64, engine vs the same network in PyTorch (same initial weights, gradients compared
first). Goal: engine <= 2x PyTorch.
"""
import numpy

import engine
import engine.functional as F
from benchmarks import measure
from benchmarks.engine_mlp import check_same_gradients
from engine import models, optim

def torch_lenet5():
    import torch
    nn_ = torch.nn
    return nn_.Sequential(nn_.Conv2d(1, 6, 5, padding=2), nn_.ReLU(), nn_.MaxPool2d(2),
                          nn_.Conv2d(6, 16, 5), nn_.ReLU(), nn_.MaxPool2d(2), nn_.Flatten(),
                          nn_.Linear(400, 120), nn_.ReLU(), nn_.Linear(120, 84), nn_.ReLU(),
                          nn_.Linear(84, 10))


def lenet5_steps(x, y, with_torch):
    """{name: (step, grads)} for LeNet-5, SGD lr 0.01 momentum 0.9, same initial weights."""
    engine.manual_seed(0)
    model = models.build("lenet5")
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    xe = engine.Tensor(x)

    def engine_grads():
        opt.zero_grad()
        loss = F.cross_entropy(model(xe), y)
        loss.backward()
        return loss.item(), [p.grad for p in model.parameters()]

    steps = {"engine": (lambda: (engine_grads(), opt.step()), engine_grads)}
    if with_torch:
        import torch
        tmodel = torch_lenet5()
        with torch.no_grad():
            for tp, p in zip(tmodel.parameters(), model.parameters()):
                tp.copy_(torch.from_numpy(p.data))
        topt = torch.optim.SGD(tmodel.parameters(), lr=0.01, momentum=0.9)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)

        def torch_grads():
            topt.zero_grad()
            loss = torch.nn.functional.cross_entropy(tmodel(xt), yt)
            loss.backward()
            return loss.item(), [p.grad.numpy() for p in tmodel.parameters()]

        steps["torch"] = (lambda: (torch_grads(), topt.step()), torch_grads)
    return steps


def run_lenet5(args, with_torch):
    rng = numpy.random.default_rng(args.seed)
    x = rng.standard_normal((64, 1, 28, 28)).astype(numpy.float32)              # (64, 1, 28, 28)
    y = rng.integers(0, 10, 64)
    steps = lenet5_steps(x, y, with_torch)
    if with_torch:
        check_same_gradients(steps["torch"][1], steps["engine"][1], "lenet5 engine vs torch")
        print("lenet5: loss and gradients agree with PyTorch's")
    times = measure.time_in_turns({n: s for n, (s, _) in steps.items()}, args.repeats, args.warmup, args.block)
    results = {name: measure.summarize(t) for name, t in times.items()}
    ratio = measure.ratios(results, [("engine", "torch")])
    measure.print_table("LeNet-5 step, batch 64, SGD momentum 0.9", results, ratio)
    return {"batch_size": 64, "results": results, "ratios": ratio, "grad_check_vs_torch": with_torch}
