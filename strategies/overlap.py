"""Overlap: all-reduce a bucket of gradients while backward still computes the earlier layers.

    dp = DataParallel(model, comm, bucket_bytes=128 << 10, overlap=True)
    --strategy dp --overlap --bucket-bytes 131072                      (the runner)

Backward produces gradients from the last layer to the first. Without overlap, the all-reduce
of every bucket waits for the whole backward:

    compute   [ forward ][ backward: layer 3 | layer 2 | layer 1 ]
    network                                                     [ bucket 0 ][ bucket 1 ]

With it (PyTorch DDP's design), each parameter's post-accumulate-grad hook counts down its
bucket; the moment a bucket's last gradient is complete, a communication thread starts its
all-reduce, and the main thread goes on with backward:

    compute   [ forward ][ backward: layer 3 | layer 2 | layer 1 ]
    network                          [ bucket 0 ]       [ bucket 1 ]   <- the wait is shorter

    step time  ~  T_forward + max(T_backward, T_allreduce) + (last bucket's all-reduce)

instead of T_forward + T_backward + T_allreduce. What it saves is at most the all-reduce time
minus the last bucket's, and only if the two really run at once: the ring's Python loop needs
the interpreter lock while NumPy's products release it, and on a machine where every core is
busy with a rank the communication thread has no core of its own (measured in benchmarks/).

The numbers are those of the non-overlapped DataParallel with the same buckets, bit for bit:
the same gradients are summed by the same algorithm in the same order. Every rank starts the
buckets in the same order (backward's order is the same on every replica). A bucket whose
gradients backward never completes (a parameter unused in this step's graph) is sent after
backward, with zeros for the missing gradients, so the ranks never wait on each other forever.
"""
import queue
import threading

import collectives
from strategies.parameters import gradients


class OverlappedAllreduce:
    """Bucket all-reduces started from gradient hooks, on a thread; ``wait()`` after backward."""

    def __init__(self, comm, params, bucket_bytes, algorithm):
        self.comm, self.params, self.algorithm = comm, params, algorithm   # params: backward order
        self.buckets = collectives.plan_buckets([p.data for p in params], bucket_bytes)
        self.bucket_of = {id(params[i]): b for b, bucket in enumerate(self.buckets) for i in bucket}
        self.handles = [p.register_post_accumulate_grad_hook(self._ready) for p in params]
        self.requests, self.finished = queue.Queue(), queue.Queue()
        self.thread = threading.Thread(target=self._serve, name=f"allreduce (rank {comm.rank})",
                                       daemon=True)
        self.thread.start()
        self._new_step()

    def _new_step(self):
        self.missing = [len(bucket) for bucket in self.buckets]   # gradients still to come, per bucket
        self.started = [False] * len(self.buckets)

    def _ready(self, param):
        """The hook: one more gradient of its bucket is complete; a full bucket starts now."""
        b = self.bucket_of[id(param)]
        self.missing[b] -= 1
        if self.missing[b] == 0:
            self._start(b)

    def _start(self, b):
        self.started[b] = True
        self.requests.put(b)

    def _serve(self):
        """The communication thread: one bucket at a time, in the order they were started."""
        while True:
            b = self.requests.get()
            if b is None:
                return
            try:
                grads = gradients([self.params[i] for i in self.buckets[b]])
                reduced = collectives.bucketed_allreduce(self.comm, grads, float("inf"), self.algorithm,
                                                         "mean", check=False)
                self.finished.put((b, reduced, None))
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread by wait()
                self.finished.put((b, None, exc))

    def wait(self):
        """After backward: start what backward left incomplete, wait for every bucket, and make
        each ``p.grad`` its view of the averaged bucket. Re-raises a failure of the thread."""
        for b, started in enumerate(self.started):
            if not started:
                self._start(b)
        failure = None
        for _ in self.buckets:
            b, reduced, exc = self.finished.get()
            failure = failure or exc
            if reduced is not None:
                for i, g in zip(self.buckets[b], reduced):
                    self.params[i].grad = g
        self._new_step()
        if failure is not None:
            raise failure

    def close(self):
        """Stop the thread and remove the hooks (the model trains on without overlap)."""
        for handle in self.handles:
            handle.remove()
        self.requests.put(None)
        self.thread.join()
