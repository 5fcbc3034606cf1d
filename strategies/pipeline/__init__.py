"""Pipeline parallelism (MATH A4, A5): the model cut into stages, micro-batches in flight.

    mpirun -n 4 python -m mpi4py -m strategies.train --strategy pipeline --model mlp7 \\
        --schedule 1f1b --micro-batches 4

Table of contents (one concept per module; docs/pipeline.md is the lecture):

    partition.py   where to cut: by parameters, by measured time, or --balance 3,2,2,1
    schedules.py   the schedules as data: one op list per rank (naive, GPipe, 1F1B, interleaved)
    simulator.py   the same op lists run with given costs: makespan, bubble, deadlocks
    executor.py    the op lists run for real: activations forward, gradients backward
    strategy.py    ModelParallel "pipeline" / TensorParallel "tp" on the dp x pp x tp grid
    evaluation.py  accuracy as a pipelined forward
    traffic.py     bytes per step by formula (pipeline, tensor, data parallel parts)
    report.py      the record's entries: stash peaks, the last step's timeline, the bubble
    gantt.py       draw a timeline (simulated or measured), one row per rank
"""
