"""Checkpoints: save a run on every rank, find the newest whole one, resume bit for bit.

    keeper.py      what is saved (parameters, optimiser, strategy state, RNG, position) and when
    store.py       the directory: a folder per checkpoint, a file per rank, a checksummed manifest
    state_file.py  one rank's nested state as one .npz (arrays + JSON), no pickle
    stateful.py    ``state_attributes``: the names of what a strategy or compressor carries
"""
from strategies.checkpoint.keeper import RUN_FLAGS, CheckpointError, Checkpoints, Position

__all__ = ["Checkpoints", "CheckpointError", "Position", "RUN_FLAGS"]
