"""Write the student copy of the course: every notebook with its solutions and hidden tests taken out.

    python scripts/make_student.py                  # notebooks/*.ipynb -> _student/notebooks/
    python scripts/make_student.py --out DIR        # (`make student`)

The notebooks mark their answers the way nbgrader does (docs/design.md, sec. 5):

- in a solution cell (cell metadata `nbgrader.solution: true`), the lines from `### BEGIN SOLUTION`
  to `### END SOLUTION` are replaced by CODE_STUB, indented like the BEGIN line (a solution cell
  without such a region is replaced whole);
- in an autograder test cell (`nbgrader.grade: true`), the lines from `### BEGIN HIDDEN TESTS` to
  `### END HIDDEN TESTS` are removed;
- every output and execution count is cleared.

This is what nbgrader's ClearSolutions, ClearHiddenTests and ClearOutput preprocessors do with the
code stub of nbgrader_config.py (tests/test_student_copy.py compares the two where nbgrader is
installed), so a teacher can use either. As nbgrader does, it refuses a solution region outside a
solution cell, a hidden-test region outside a grade cell, and an unclosed or nested region.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
CODE_STUB = "# YOUR CODE HERE\n..."      # a function then returns None: its check says "not attempted"
TEXT_STUB = "YOUR ANSWER HERE"
SOLUTION = ("BEGIN SOLUTION", "END SOLUTION")
HIDDEN = ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
CLEARED_METADATA = ("collapsed", "scrolled", "execution")     # nbconvert's ClearOutput, plus timings


def _nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def replace_regions(source: str, delimiters: tuple, stub: str | None, where: str) -> tuple[str, bool]:
    """source with every region between the delimiters replaced by `stub` (None: removed).

    Returns (new source, whether a region was found). The delimiter lines go with the region.
    """
    begin, end = delimiters
    out, inside, found = [], False, False
    for line in source.split("\n"):
        if begin in line:
            if inside:
                raise ValueError(f"{where}: nested '{begin}'")
            inside = found = True
            if stub is not None:
                indent = re.match(r"\s*", line).group(0)
                out.extend(indent + s for s in stub.split("\n"))
        elif end in line:
            if not inside:
                raise ValueError(f"{where}: '{end}' without '{begin}'")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: '{begin}' is never closed by '{end}'")
    return "\n".join(out), found


def student_cell(cell, where: str):
    """The student's version of one cell (a new cell; the input is left alone)."""
    cell = nbformat.from_dict(dict(cell, metadata=dict(cell.get("metadata", {}))))
    is_solution, is_grade = bool(_nbgrader(cell).get("solution")), bool(_nbgrader(cell).get("grade"))
    stub = CODE_STUB if cell.cell_type == "code" else TEXT_STUB
    source, replaced = replace_regions(cell.source, SOLUTION, stub, where)
    if replaced and not is_solution:
        raise ValueError(f"{where}: a solution region in a cell that is not a solution cell; give it "
                         f"nbgrader metadata with solution: true (docs/design.md, sec. 5)")
    if is_solution and not replaced:
        source = stub
    source, removed = replace_regions(source, HIDDEN, None, where)
    if removed and not is_grade:
        raise ValueError(f"{where}: hidden tests in a cell that is not an autograder test cell "
                         f"(nbgrader metadata grade: true)")
    cell.source = source
    if cell.cell_type == "code":
        cell.outputs, cell.execution_count = [], None
    for key in CLEARED_METADATA:
        cell.metadata.pop(key, None)
    return cell


def student_copy(nb, name: str = "notebook"):
    """A new notebook: nb with solutions replaced by stubs, hidden tests and outputs removed."""
    cells = [student_cell(cell, f"{name}, cell {i}") for i, cell in enumerate(nb.cells)]
    out = nbformat.v4.new_notebook(cells=cells, metadata={k: nb.metadata[k] for k in ("kernelspec", "language_info")
                                                          if k in nb.metadata})
    out.nbformat, out.nbformat_minor = nb.nbformat, nb.nbformat_minor
    nbformat.validate(out)
    return out


def write_student_copies(paths, target: Path) -> list[Path]:
    """Write the student copy of each notebook into `target`; returns the written paths."""
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        nbformat.write(student_copy(nb, path.name), target / path.name)
        written.append(target / path.name)
    return written


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument("--out", type=Path, default=REPO / "_student")
    args = parser.parse_args(argv)
    paths = sorted(args.notebooks or (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    try:
        written = write_student_copies(paths, args.out / "notebooks")
    except ValueError as e:
        sys.exit(f"make student: {e}")
    for path in written:
        print(f"student copy: {path}")


if __name__ == "__main__":
    main()
