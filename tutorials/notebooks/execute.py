"""Execute notebooks in place so that their committed outputs are current, or check that they are.

    python tutorials/notebooks/execute.py                          # every notebook here
    python tutorials/notebooks/execute.py 01_autograd.ipynb
    python tutorials/notebooks/execute.py --check                  # write nothing; exit 1 if stale

Notebooks are stored as .ipynb *with* outputs, so a code host renders them. ``--check`` (and
tests/test_notebooks.py, through ``stale_outputs``) executes each one again and compares the
text of every code cell's outputs with the committed text:

    compared   stdout and stderr (consecutive pieces of one stream joined: how the kernel cut
               a stream into messages depends on timing), the text/plain of results and
               displays (e.g. ``<Figure size 600x350 with 1 Axes>``), error names and values
    ignored    images and HTML (their bytes change with the matplotlib version), execution
               counts, cell metadata, the newlines that end an output

Nothing is normalised with patterns: every compared character must match. A cell whose text
legitimately differs from run to run (a timing, a machine-dependent branch) carries the cell
tag ``varies`` (cell metadata ``"tags": ["varies"]``); its text is not compared, it only has to
run without error. Keep such cells small and put the deterministic numbers (losses from a seed,
byte counts, errors printed at a fixed precision) in cells without the tag.

The committed text is the text of the machine that regenerated it. Deterministic is not the
same everywhere: float32 products through a multithreaded BLAS (notebook 02's training) can
end in other digits on another CPU, so after moving to another machine, regenerate first and
look at the diff.

Each notebook runs with this repository's root as working directory.
"""
import argparse
import difflib
import pathlib
import sys

import nbformat
from nbclient import NotebookClient

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VARIES = "varies"  # the cell tag: this cell's text output is not compared


def execute(path, timeout=600, write=True):
    """Run every cell of the notebook at ``path``; raise on the first failing cell.

    Execution timestamps are not recorded (and old ones are dropped), and the pieces of one
    stream are joined (how the kernel cut them depends on timing), so that regenerating a
    notebook whose text did not change changes its file as little as possible."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
    NotebookClient(notebook, timeout=timeout, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(ROOT)}}).execute()
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = join_streams(cell.outputs)
    if write:
        nbformat.write(notebook, path)
    return notebook


def join_streams(outputs):
    """``outputs`` with every run of consecutive pieces of one stream (stdout, stderr) joined."""
    joined = []
    for output in outputs:
        if (output["output_type"] == "stream" and joined and joined[-1]["output_type"] == "stream"
                and joined[-1]["name"] == output["name"]):
            joined[-1] = nbformat.v4.new_output("stream", name=output["name"],
                                                text=joined[-1]["text"] + output["text"])
        else:
            joined.append(output)
    return joined


def text_outputs(cell):
    """The compared text of one code cell's outputs, as one string (see module docstring)."""
    pieces = []  # (kind, text)
    for output in join_streams(cell.get("outputs", [])):   # one stream, however the kernel cut it
        kind = output["output_type"]
        if kind == "stream":
            kind, text = output["name"], output["text"]
        elif kind in ("execute_result", "display_data"):
            text = output.get("data", {}).get("text/plain", "")
        elif kind == "error":
            text = f"{output['ename']}: {output['evalue']}"
        else:
            text = ""
        pieces.append((kind, text))
    return "".join(f"[{kind}]\n{text.rstrip(chr(10))}\n" for kind, text in pieces)


def stale_outputs(name, committed, fresh):
    """A message per code cell of ``fresh`` (``committed`` just executed) whose text differs from
    ``committed``'s; empty when the committed outputs are current. Cells are numbered as in
    ``notebook.cells`` (markdown cells count), from 0."""
    messages = []
    for index, (old, new) in enumerate(zip(committed.cells, fresh.cells)):   # fresh: same cells, run
        if old.cell_type != "code" or VARIES in old.metadata.get("tags", []):
            continue
        before, after = text_outputs(old), text_outputs(new)
        if before != after:
            first_line = old.source.strip().splitlines()[0] if old.source.strip() else ""
            diff = difflib.unified_diff(before.splitlines(), after.splitlines(),
                                        "committed", "executed now", lineterm="")
            messages.append(f"{name}, cell {index} ({first_line!r}):\n" + "\n".join(diff))
    return messages


def check(path, timeout=600):
    """Execute the notebook at ``path`` without writing it; the stale_outputs messages."""
    committed = nbformat.read(path, as_version=4)
    return stale_outputs(path.name, committed, execute(path, timeout, write=False))


def main(argv=None):
    parser = argparse.ArgumentParser(description="Execute notebooks in place, or --check them.")
    parser.add_argument("names", nargs="*", help="notebook file names here (default: all)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; print every cell whose text output is stale, exit 1 if any")
    args = parser.parse_args(argv)
    names = args.names or sorted(p.name for p in HERE.glob("*.ipynb"))
    stale = []
    for name in names:
        print("checking" if args.check else "executing", name, flush=True)
        if args.check:
            stale += check(HERE / name)
        else:
            execute(HERE / name)
    for message in stale:
        print(message, end="\n\n")
    if stale:
        print(f"{len(stale)} stale cell(s); regenerate with: python tutorials/notebooks/execute.py NAME")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
