"""What a run wrote with --save-params, and how far two such files are apart (the exactness
checks of every distributed strategy against the single process, in-process and under mpirun)."""
import numpy


def load(path):
    """{parameter name: array} from a --save-params file."""
    with numpy.load(path) as f:
        return {name: f[name] for name in f.files}


def max_diff(a, b):
    """max |a - b| over every parameter of two --save-params files (the same names, or an error),
    computed in float64."""
    a, b = load(a), load(b)
    assert a.keys() == b.keys(), (sorted(a), sorted(b))
    return max(float(numpy.abs(a[name].astype(numpy.float64) - b[name]).max()) for name in a)
