"""One rank's checkpoint file: a nested state (dicts, lists, arrays, numbers) as ONE .npz.

    data = encode({"optimizer": {"state": [{"momentum_buffer": array}]}, "steps": 12})
    state = decode(data)                               # the same tree, arrays bit for bit

Every array becomes an entry of the .npz (``a0``, ``a1``, ...) and the rest of the tree is
JSON in the entry ``tree``, where each array stands as {"__array__": "a0"}. So a checkpoint
opens with ``numpy.load(path)`` (no pickle: loading one runs no code), and its structure reads
as text. JSON lacks a few things a strategy's state has; they are tagged the same way:

    tuple  {"__tuple__": [...]}        set   {"__set__": [...]}
    a dict whose keys are not all strings (a staleness histogram tau -> count)
           {"__items__": [[key, value], ...]}
Floats round-trip exactly (JSON writes the shortest repr that reads back the same double);
NaN and infinity are allowed here (Python's json reads its own NaN back).
"""
import io
import json
import zipfile

import numpy

_TAGS = ("__array__", "__tuple__", "__set__", "__items__")


def encode(tree):
    """``tree`` as the bytes of an .npz (see the module docstring)."""
    arrays = {}

    def walk(value):
        if isinstance(value, numpy.ndarray):
            key = f"a{len(arrays)}"
            arrays[key] = value
            return {"__array__": key}
        if isinstance(value, numpy.generic):                 # numpy.float64(0.5) -> 0.5
            return value.item()
        if isinstance(value, dict):
            if all(isinstance(k, str) and k not in _TAGS for k in value):
                return {k: walk(v) for k, v in value.items()}
            return {"__items__": [[walk(k), walk(v)] for k, v in value.items()]}
        if isinstance(value, tuple):
            return {"__tuple__": [walk(v) for v in value]}
        if isinstance(value, (set, frozenset)):
            return {"__set__": [walk(v) for v in sorted(value)]}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(f"checkpoint state: cannot store a {type(value).__name__} ({value!r:.60}); "
                        "give arrays, numbers, strings, lists, tuples, sets or dicts")

    tree_json = json.dumps(walk(tree))
    buffer = io.BytesIO()
    numpy.savez(buffer, tree=numpy.array(tree_json), **arrays)
    return buffer.getvalue()


def decode(data, name="checkpoint"):
    """The tree ``encode`` was given, from its bytes; ValueError naming ``name`` if unreadable."""
    try:
        with numpy.load(io.BytesIO(data), allow_pickle=False) as npz:
            entries = {key: npz[key] for key in npz.files}
        tree = json.loads(str(entries.pop("tree")))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise ValueError(f"{name}: not a readable checkpoint file ({type(exc).__name__}: {exc})") from exc

    def walk(value):
        if isinstance(value, list):
            return [walk(v) for v in value]
        if not isinstance(value, dict):
            return value
        if "__array__" in value:
            return entries[value["__array__"]]
        if "__tuple__" in value:
            return tuple(walk(v) for v in value["__tuple__"])
        if "__set__" in value:
            return {walk(v) for v in value["__set__"]}
        if "__items__" in value:
            return {walk(k): walk(v) for k, v in value["__items__"]}
        return {k: walk(v) for k, v in value.items()}

    return walk(tree)
