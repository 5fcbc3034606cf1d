"""Run one rank's schedule (schedules.py): the ops of one training step, in order (MATH A4, A5).

    executor = Executor(modules, pp_comm, stages, rank)           # this rank's v model chunks
    loss_sum, rows = executor.run(ops, micro_x, micro_y, loss_fn)  # grads accumulated in p.grad

What each op does on virtual stage s = chunk * p + rank (V = v p of them, the model cut in V):

    RECV_ACTIVATION m   h_{s-1}(m) from the rank of s - 1 (Tag.ACTIVATION), into a Tensor that
                        requires grad, so that backward leaves dL/dh_{s-1} in its .grad
    FORWARD m           h_s(m) = f_s(h_{s-1}(m))  (s = 0: the data); the last stage also
                        L_m = (1/M) loss(h, y_m): the mean over M equal micro-batches is the
                        mean over the batch, so the accumulated gradient is the batch's (F9)
    SEND_ACTIVATION m   isend h_s(m) to the rank of s + 1 (kept until STEP)
    RECV_GRADIENT m     dL/dh_s(m) from the rank of s + 1 (Tag.ACTIVATION_GRAD)
    BACKWARD m          backprop through f_s from dL/dh_s(m) (last stage: from L_m): parameter
                        gradients add up in p.grad over the micro-batches (F6)
    SEND_GRADIENT m     isend dL/dh_{s-1}(m) to the rank of s - 1
    STEP                wait for every send of the step (the optimiser runs after: strategy.py)

Sends are non-blocking and receives block, the semantics the schedules are checked against
(schedules.check, simulator.simulate); messages of one pair and kind match in FIFO order.
Between FORWARD m and BACKWARD m the stage stashes (h_{s-1}(m), its output): ``stash_peak``
counts the most held at once (GPipe M, 1F1B at most p - rank), ``stash_peak_bytes`` the
most bytes of stage inputs held (the layers' own saved arrays come on top). Each forward and backward
of the LAST step is timed (time.time(), comparable across the processes of one machine):
``events`` is what gantt.draw and the measured bubble read. ``emulate``: (forward, backward) seconds per
micro-batch and chunk; each such op is padded with a sleep to that duration, so four stages
on two cores show the schedule rather than the oversubscription.
"""
import time

import numpy

from collectives.tags import Tag
from engine import Tensor
from strategies.pipeline import schedules as S


class Executor:
    """One pipeline rank: its model chunks, the pp communicator, the shapes between stages."""

    def __init__(self, modules, pp_comm, stages, rank, boundary_shapes, dtype, emulate=None):
        self.modules, self.pp, self.stages, self.rank = modules, pp_comm, stages, rank
        self.virtual = len(modules) * stages                   # V
        self.shapes = boundary_shapes    # shapes[s]: feature shape of h_s (s = -1: the input)
        self.dtype, self.emulate = dtype, emulate
        self.events, self.stash_peak, self.stash_peak_bytes = [], 0, 0

    def stage_of(self, chunk):
        return S.virtual_stage(self.rank, chunk, self.stages)

    def run(self, ops, micro_x, micro_y, loss_fn):
        """One step's ops; returns (sum over the last stage's rows of the loss, rows)."""
        M = len(micro_x)
        self.events = []                                  # the last step's, for the record
        inputs, outputs, grads_in, grads_out, sends = {}, {}, {}, {}, []
        loss_sum, rows, stashed, stashed_bytes = 0.0, 0, 0, 0
        for op in ops:
            key, s = (op.micro, op.chunk), self.stage_of(op.chunk)
            start = time.time()
            if op.kind == S.RECV_ACTIVATION:
                buffer = numpy.empty((len(micro_x[op.micro]),) + self.shapes[s - 1], self.dtype)
                self.pp.recv(buffer, (s - 1) % self.stages, Tag.ACTIVATION)
                inputs[key] = Tensor(buffer, requires_grad=True)
            elif op.kind == S.FORWARD:
                x = inputs.get(key) if s > 0 else Tensor(micro_x[op.micro])
                inputs[key] = x
                h = self.modules[op.chunk](x)
                if s == self.virtual - 1:                               # the loss, scaled 1/M
                    loss = loss_fn(h, micro_y[op.micro])
                    loss_sum, rows = loss_sum + loss.item() * len(micro_y[op.micro]), rows + len(micro_y[op.micro])
                    h = loss * (1.0 / M)
                outputs[key] = h
                stashed, stashed_bytes = stashed + 1, stashed_bytes + x.data.nbytes
                self.stash_peak = max(self.stash_peak, stashed)
                self.stash_peak_bytes = max(self.stash_peak_bytes, stashed_bytes)
            elif op.kind == S.SEND_ACTIVATION:
                data = numpy.ascontiguousarray(outputs[key].data)
                sends.append((self.pp.isend(data, (s + 1) % self.stages, Tag.ACTIVATION), data))
            elif op.kind == S.RECV_GRADIENT:
                grads_in[key] = numpy.empty(outputs[key].shape, self.dtype)
                self.pp.recv(grads_in[key], (s + 1) % self.stages, Tag.ACTIVATION_GRAD)
            elif op.kind == S.BACKWARD:
                h = outputs.pop(key)
                h.backward(None if s == self.virtual - 1 else Tensor(grads_in.pop(key)))
                x = inputs.pop(key)
                stashed, stashed_bytes = stashed - 1, stashed_bytes - x.data.nbytes
                if s > 0:
                    grads_out[key] = numpy.ascontiguousarray(x.grad)
            elif op.kind == S.SEND_GRADIENT:
                data = grads_out.pop(key)
                sends.append((self.pp.isend(data, (s - 1) % self.stages, Tag.ACTIVATION_GRAD), data))
            elif op.kind == S.STEP:
                self.pp.waitall([request for request, _ in sends])
            self.pad(op, start)
            if op.kind in (S.FORWARD, S.BACKWARD):
                self.events.append((op.kind, op.micro, op.chunk, start, time.time()))
        return loss_sum, rows

    def pad(self, op, start):
        """--emulate-compute: make a forward or backward last exactly its fixed duration."""
        if self.emulate and op.kind in (S.FORWARD, S.BACKWARD):
            seconds = self.emulate[0] if op.kind == S.FORWARD else self.emulate[1]
            left = start + seconds - time.time()
            if left > 0:
                time.sleep(left)
