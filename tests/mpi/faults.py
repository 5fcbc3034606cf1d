"""A strategy that fails on purpose: the failure tests of the parameter server and the pipeline,
in-process and under mpirun, all start from this one class factory."""


def failing(base, rank, step):
    """``base`` (a Strategy class) whose world rank ``rank`` raises in its train_step once it
    has done ``step`` steps, with the message "<role> rank <rank> fails on purpose"."""
    class Failing(base):
        def train_step(self, optimizer, loss_fn, xb, yb):
            if self.comm.rank == rank and self.steps == step:
                raise RuntimeError(f"{self.role} rank {rank} fails on purpose")
            return super().train_step(optimizer, loss_fn, xb, yb)

    Failing.__name__ = Failing.__qualname__ = f"Failing{base.__name__}"
    return Failing
