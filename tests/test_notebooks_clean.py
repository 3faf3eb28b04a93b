"""The notebooks as documents (docs/design.md, sec. 4): committed without outputs; a code cell holds one
idea (at most 40 lines), the setup cell at most 15; a helper is defined in one notebook at most (what
two notebooks need lives in the library); no library name is redefined; no reference to a file
outside the repository; folded "More checks" cells are folded. Deterministic: false-failure rate 0.
"""
import ast
import json
import pathlib
import re
from collections import defaultdict

import pytest

import diffusion_lib

REPO = pathlib.Path(__file__).parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
MAX_LINES, MAX_SETUP_LINES = 40, 15


def code_cells(path):
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def source(cell) -> str:
    return "".join(cell["source"])


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_outputs(path):
    dirty = [i for i, c in enumerate(code_cells(path)) if c.get("outputs") or c.get("execution_count")]
    assert not dirty, f"{path.name}: code cells {dirty} carry outputs; strip them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_cells_hold_one_idea(path):
    cells = code_cells(path)
    long = [(i, len(source(c).splitlines())) for i, c in enumerate(cells) if len(source(c).splitlines()) > MAX_LINES]
    assert not long, f"{path.name}: code cells over {MAX_LINES} lines (index among code cells, lines): {long}"
    setup = len(source(cells[0]).splitlines())
    assert setup <= MAX_SETUP_LINES, f"{path.name}: the setup cell has {setup} lines (at most {MAX_SETUP_LINES})"


def top_level_definitions(path) -> set[str]:
    names = set()
    for cell in code_cells(path):
        text = "\n".join(line for line in source(cell).splitlines() if not line.lstrip().startswith(("%", "!")))
        tree = ast.parse(text, filename=f"{path.name}, cell {cell.get('id')}")   # a cell that is not Python fails here
        names |= {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    return names


def test_no_helper_is_defined_in_two_notebooks():
    where = defaultdict(list)
    for path in NOTEBOOKS:
        for name in top_level_definitions(path):
            where[name].append(path.stem[:2])
    twice = {name: nbs for name, nbs in where.items() if len(nbs) > 1}
    assert not twice, f"defined in several notebooks (move them to the library): {twice}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_library_name_is_redefined(path):
    clash = sorted(top_level_definitions(path) & set(diffusion_lib.__all__))
    assert not clash, f"{path.name} redefines library names: {clash}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_reference_outside_the_repository(path):
    text = path.read_text()
    for outside in ("DESIGN.md", "STYLE.md", "../shared", "/work/"):
        assert outside not in text, f"{path.name} refers to {outside!r}, which is not in the repository"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_more_checks_cells_are_folded(path):
    for cell in code_cells(path):
        if "more-checks" in cell["metadata"].get("tags", []):
            hidden = cell["metadata"].get("jupyter", {})
            assert hidden.get("source_hidden") and hidden.get("outputs_hidden"), \
                f"{path.name}: a 'more-checks' cell is not folded: {source(cell)[:60]!r}"


def test_design_notes_are_in_the_repository():
    here = pathlib.Path(__file__).resolve()
    for path in [*REPO.glob("diffusion_lib/**/*.py"), *REPO.glob("tests/*.py"), REPO / "README.md"]:
        if path.resolve() == here:
            continue
        text = path.read_text()
        assert not re.search(r"(?<!docs/)\bDESIGN\.md", text), f"{path} refers to DESIGN.md outside the repository"
