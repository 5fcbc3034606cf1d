"""Execute notebooks in place so that their committed outputs are current.

    python tutorials/notebooks/execute.py                 # every notebook here
    python tutorials/notebooks/execute.py 01_autograd.ipynb

Notebooks are stored as .ipynb *with* outputs, so a code host renders them;
tests/test_notebooks.py executes each one again (without writing) to keep them honest.
Each notebook runs with this repository's root as working directory.
"""
import pathlib
import sys

import nbformat
from nbclient import NotebookClient

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def execute(path, timeout=600, write=True):
    """Run every cell of the notebook at ``path``; raise on the first failing cell."""
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT)}}).execute()
    if write:
        nbformat.write(notebook, path)
    return notebook


if __name__ == "__main__":
    names = sys.argv[1:] or sorted(p.name for p in HERE.glob("*.ipynb"))
    for name in names:
        print("executing", name, flush=True)
        execute(HERE / name)
