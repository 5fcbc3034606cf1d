"""Benchmarks: each module measures one thing against a reference in the same run and
writes JSON + PNG to benchmarks/results. Run them as modules from the repository root
(``python -m benchmarks.engine``), so that ``benchmarks/collectives.py`` does not shadow
the ``collectives`` package."""
