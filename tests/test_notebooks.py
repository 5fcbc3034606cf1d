"""Every notebook in tutorials/notebooks runs from top to bottom without error."""
import importlib.util
import pathlib

import pytest

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "tutorials" / "notebooks"
pytest.importorskip("nbclient", reason="notebook tests need the 'notebooks' extra")

_spec = importlib.util.spec_from_file_location("execute_notebooks", NOTEBOOKS / "execute.py")
_execute = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_execute)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_notebook_executes(name):
    notebook = _execute.execute(NOTEBOOKS / name, write=False)
    errors = [o for cell in notebook.cells if cell.cell_type == "code"
              for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{name}: {errors}"
