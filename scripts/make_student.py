"""Write the student copy of the course: every notebook without its solution cells.

    python scripts/make_student.py                  # notebooks/*.ipynb -> _student/notebooks/
    python scripts/make_student.py --out DIR        # (`make student`)

A solution cell is a code cell tagged "solution" (cell metadata `tags: ["solution"]`); it follows
the exercise cell it solves and marks its answer with `exercises.solution` (diffusion_lib/exercises.py).
The copy drops those cells, clears every output and execution count, and keeps only the kernel
and language metadata of each notebook. It refuses to write a notebook in which
`exercises.solution` still appears outside a tagged cell (a solution someone forgot to tag).
In the copy each check prints "not attempted yet" until the student fills in the exercise cell.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
TAG = "solution"
MARKER = "exercises.solution"


def is_solution(cell) -> bool:
    return TAG in cell.get("metadata", {}).get("tags", [])


def student_copy(nb, name: str = "notebook"):
    """A new notebook: nb without solution cells, outputs or extra metadata."""
    cells = []
    for cell in nb.cells:
        if is_solution(cell):
            continue
        if MARKER in cell.source:
            raise ValueError(f"{name}: cell {cell.get('id')} uses {MARKER} but is not tagged "
                             f"{TAG!r}; tag it (cell metadata tags: [{TAG!r}]) so the student copy omits it")
        cell = nbformat.from_dict(dict(cell))
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("jupyter", None)        # nothing left to hide
        cell.metadata.pop("execution", None)
        cells.append(cell)
    out = nbformat.v4.new_notebook(cells=cells, metadata={k: nb.metadata[k] for k in ("kernelspec", "language_info")
                                                          if k in nb.metadata})
    out.nbformat, out.nbformat_minor = nb.nbformat, nb.nbformat_minor
    nbformat.validate(out)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument("--out", type=Path, default=REPO / "_student")
    args = parser.parse_args(argv)
    paths = sorted(args.notebooks or (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    target = args.out / "notebooks"
    target.mkdir(parents=True, exist_ok=True)
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        try:
            copy = student_copy(nb, path.name)
        except ValueError as e:
            sys.exit(f"make student: {e}")
        nbformat.write(copy, target / path.name)
        removed = len(nb.cells) - len(copy.cells)
        print(f"{path.name}: {removed} solution cell(s) removed -> {target / path.name}")


if __name__ == "__main__":
    main()
