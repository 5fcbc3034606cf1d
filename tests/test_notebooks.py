"""Every notebook in tutorials/notebooks runs from top to bottom without error, and its committed
text outputs are what the code computes today.

Each notebook is executed once (without writing) and every code cell's text output (stdout,
stderr, text/plain results) is compared with the committed one, character for character, except
in cells tagged ``varies`` (timings, machine-dependent branches): tutorials/notebooks/execute.py
documents what is compared. A stale notebook fails with a diff naming the notebook and the cell;
``python tutorials/notebooks/execute.py NAME`` regenerates it.
"""
import importlib.util
import pathlib

import pytest

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "tutorials" / "notebooks"
pytest.importorskip("nbclient", reason="notebook tests need the 'notebooks' extra")
import nbformat  # noqa: E402  (installed with nbclient)

_spec = importlib.util.spec_from_file_location("execute_notebooks", NOTEBOOKS / "execute.py")
_execute = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_execute)
NAMES = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", NAMES)
def test_notebook_executes_and_its_outputs_are_current(name):
    committed = nbformat.read(NOTEBOOKS / name, as_version=4)
    fresh = _execute.execute(NOTEBOOKS / name, write=False)   # raises if a cell raises
    stale = _execute.stale_outputs(name, committed, fresh)
    if stale:
        pytest.fail("committed outputs no longer match what the code computes; regenerate with "
                    f"`python tutorials/notebooks/execute.py {name}`\n\n" + "\n\n".join(stale), pytrace=False)


def _notebook(cells):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = cells
    return notebook


def _cell(source, text, tags=()):
    cell = nbformat.v4.new_code_cell(source, outputs=[nbformat.v4.new_output("stream", name="stdout", text=t)
                                                      for t in text])
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def test_stale_outputs_names_the_cell_and_shows_the_difference():
    committed = _notebook([_cell("print(1)", ["1\n"]), _cell("print(loss)", ["loss 0.2976\n"])])
    fresh = _notebook([_cell("print(1)", ["1\n"]), _cell("print(loss)", ["loss 0.2977\n"])])
    [message] = _execute.stale_outputs("x.ipynb", committed, fresh)
    assert message.startswith("x.ipynb, cell 1 ('print(loss)')")
    assert "-loss 0.2976" in message and "+loss 0.2977" in message


def test_stale_outputs_joins_stream_pieces_and_skips_varies_cells():
    committed = _notebook([_cell("train()", ["epoch 1\nepoch 2\n"]), _cell("time()", ["4.5 ms\n"], ["varies"])])
    fresh = _notebook([_cell("train()", ["epoch 1\n", "epoch 2\n"]), _cell("time()", ["4.7 ms\n"], ["varies"])])
    assert _execute.stale_outputs("x.ipynb", committed, fresh) == []
