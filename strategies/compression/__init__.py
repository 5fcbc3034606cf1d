"""Gradient compression for data parallelism, with error feedback (MATH A6: compress what is sent).

    c = build("topk", ratio=0.01)                 # error feedback on by default for biased ones
    g_mean = c.exchange(comm, flat_gradient)      # on every rank: mean_r D(C(g_r))
    c.bytes_sent(comm.size, n, itemsize)          # what comm.counters.bytes_sent will show

Table of contents (one concept per module):

    base.py         Compressor (the interface, the all-gather transport), NoCompression ("none"),
                    ErrorFeedback
    quantizers.py   FP16, QSGD, Sign: fewer bits per element
    sparsifiers.py  TopK (+ DGC momentum correction, warm-up), RandomK: fewer elements
    powersgd.py     PowerSGD: low-rank factors per matrix, error feedback built in

Mean bytes sent per rank by one exchange (p ranks, n elements of ``itemsize`` bytes, k = max(1,
round(ratio n)), ring all-reduce = 2 (p-1)/p x bytes):

    none       2 (p-1)/p n itemsize                  ring all-reduce mean
    fp16       2 (p-1)/p n 2                         ring all-reduce sum of float16(g / p)
    topk       (p-1) k (itemsize + 4)                all-gather of values + int32 indices
    randomk    (p-1) k (itemsize + 4)
    qsgd       (p-1) (n b + itemsize)                b = 1 (int8 levels, s <= 127) else 2
    sign       (p-1) (ceil(n/8) + itemsize)          packed sign bits + one scale
    powersgd   2 (p-1)/p (sum_M r (m+k) + n_1d) itemsize

error_feedback default (``build``): on for the biased compressors (topk, randomk, sign), off
for none, fp16 and qsgd (unbiased or nearly exact); powersgd has its own (error_feedback= turns
it off); topk with momentum_correction keeps DGC's accumulator instead (never wrapped twice).
"""
from strategies.compression.base import Compressor, ErrorFeedback, NoCompression, check_ratio
from strategies.compression.powersgd import PowerSGD
from strategies.compression.quantizers import FP16, QSGD, Sign
from strategies.compression.sparsifiers import RandomK, TopK

COMPRESSORS = {"none": NoCompression, "fp16": FP16, "topk": TopK, "randomk": RandomK,
               "qsgd": QSGD, "sign": Sign, "powersgd": PowerSGD}
BIASED = {"topk", "randomk", "sign", "powersgd"}   # error feedback on by default
PARAMS = {"none": (), "fp16": (), "sign": (), "randomk": ("ratio", "seed"), "qsgd": ("levels", "seed"),
          "topk": ("ratio", "momentum_correction", "warmup_steps", "seed"),
          "powersgd": ("rank", "shapes", "seed")}
KNOWN = {"ratio", "levels", "rank", "error_feedback", "momentum_correction", "warmup_steps", "seed", "shapes"}


def build(name, **params):
    """The compressor ``name`` with its own parameters taken from ``params``; parameters meant for
    other compressors are ignored (one command line feeds them all), unknown ones refused.
    ValueError names the bad name or parameter."""
    if name not in COMPRESSORS:
        raise ValueError(f"unknown compressor {name!r}; choose from {sorted(COMPRESSORS)}")
    unknown = set(params) - KNOWN
    if unknown:
        raise ValueError(f"unknown compressor parameter(s) {sorted(unknown)}; known: {sorted(KNOWN)}")
    own = {key: params[key] for key in PARAMS[name] if params.get(key) is not None}
    feedback = params.get("error_feedback")
    feedback = name in BIASED if feedback is None else bool(feedback)
    if name == "powersgd":
        return PowerSGD(error_feedback=feedback, **own)
    compressor = COMPRESSORS[name](**own)
    if feedback and not compressor.error_feedback:
        compressor = ErrorFeedback(compressor)
    return compressor


__all__ = ["BIASED", "COMPRESSORS", "Compressor", "ErrorFeedback", "FP16", "NoCompression",
           "PowerSGD", "QSGD", "RandomK", "Sign", "TopK", "build", "check_ratio"]
