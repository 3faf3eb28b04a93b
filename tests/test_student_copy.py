"""The student copy and the static book built from it (scripts/make_student.py, scripts/build_book.py).

One test per notebook: its student copy (solutions replaced by stubs, hidden tests and outputs
removed) is executed top to bottom with FAST=1 and exported to its page of the static HTML book,
as `FAST=1 make book` does, and then:

- the student copy runs: nothing raises, and every exercise check prints "not attempted yet";
- no answer is given away: after the last cell, every function that the student copy defines is
  handed to every exercise check, and none may pass (docs/design.md, sec. 5);
- nothing of a solution or a hidden test is left in the copy, and make_student refuses solution
  regions outside solution cells, unclosed regions, and hidden tests outside grade cells;
- where nbgrader is installed (the `teacher` extra; CI installs it), its ClearSolutions,
  ClearHiddenTests and ClearOutput with the repository's nbgrader_config.py give the same sources;
- each notebook's FAST run stays within twice its budget (FAST_BUDGET_S);
- the book: the index follows the course map; each page loads MathJax from the book's own folder
  and nothing from the network, embeds its figures, shows a snapshot where each widget was and
  folds the "More checks" cells; where Chromium is present, MathJax typesets the pages offline.

Deterministic verdicts (seeded notebooks, no statistics): designed false-failure rate 0, apart
from the time budget, which a machine far slower than the 2-core course machine can exceed.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nbformat
import pytest

import build_book
import make_student
from browser_util import chromium, missing_browser

REPO = Path(__file__).resolve().parent.parent
ALL_NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NOTEBOOKS = ALL_NOTEBOOKS
if os.environ.get("COURSE_NOTEBOOKS"):        # e.g. COURSE_NOTEBOOKS=01,02: check only these while writing them
    NOTEBOOKS = [p for p in NOTEBOOKS if p.stem[:2] in os.environ["COURSE_NOTEBOOKS"].split(",")]
FAST_BUDGET_S = 45          # per notebook, FAST=1 on the 2-core machine; the test allows twice this
CHECK_CALL = re.compile(r"exercises\.check_\w+\(")

# Hands every function the notebook defined to every exercise check, after the last cell.
PROBE = """
import contextlib as _cl, io as _io, json as _json, types as _types
from diffusion_lib.course import exercises as _ex
_fns = {_k: _v for _k, _v in dict(globals()).items() if isinstance(_v, _types.FunctionType)
        and getattr(_v, "__module__", "") == "__main__" and not _k.startswith("_")}
_passed = []
for _fname, _fn in _fns.items():
    for _cname in [_c for _c in dir(_ex) if _c.startswith("check_")]:
        with _cl.redirect_stdout(_io.StringIO()):
            try:
                _ok = bool(getattr(_ex, _cname)(_fn))
            except Exception:
                _ok = False
        if _ok:
            _passed.append([_fname, _cname])
print("PROBE " + _json.dumps({"functions": sorted(_fns), "passed": _passed}))
"""


@pytest.fixture(scope="session")
def book_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    build_book.prepare(out)
    return out


def stdout_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_student_copy_runs_gives_nothing_away_and_makes_its_page(book_dir, path, monkeypatch):
    monkeypatch.setenv("FAST", "1")                        # the kernel inherits it
    run = build_book.build_page(path, book_dir, build_book.page_list(ALL_NOTEBOOKS), timeout=240, probe=PROBE)
    # every exercise check says "not attempted yet" (and nothing raised: build_page stops on an error)
    checks = [c for c in run["notebook"].cells if c.cell_type == "code" and CHECK_CALL.search(c.source)]
    if path.stem[:2] != "00":
        assert 2 <= len(checks) <= 4, f"{path.name}: {len(checks)} exercise checks (2-4 expected)"
    for cell in checks:
        out = stdout_of(cell)
        assert "not attempted yet" in out and "correct" not in out.replace("not attempted", ""), \
            f"{path.name}: a check in the student copy printed {out!r}"
    # no function on the page passes any exercise check
    probe = "".join(o.get("text", "") for o in run["probe"])
    found = json.loads(probe.split("PROBE ", 1)[1])
    assert not found["passed"], f"{path.name}: these functions of the student copy pass exercise checks " \
                                f"(answers left on the page): {found['passed']}"
    # the FAST run keeps its budget
    assert run["seconds"] <= 2 * FAST_BUDGET_S, f"{path.name}: FAST run {run['seconds']:.0f} s, budget {FAST_BUDGET_S} s"
    check_page(book_dir, path)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_nothing_of_a_solution_is_left(path):
    copy = make_student.student_copy(nbformat.read(path, as_version=4), path.name)
    text = json.dumps([c.source for c in copy.cells])
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "assert result"):
        assert marker not in text, f"{path.name}: {marker!r} is left in the student copy"
    assert all(not c.get("outputs") for c in copy.cells if c.cell_type == "code")


def _cell(source, **nbgrader):
    cell = nbformat.v4.new_code_cell(source)
    if nbgrader:
        cell.metadata["nbgrader"] = {"schema_version": 3, "grade_id": "x", "locked": False, "task": False,
                                     "solution": False, "grade": False, **nbgrader}
    return cell


def test_regions_become_stubs_and_hidden_tests_go():
    nb = nbformat.v4.new_notebook(cells=[
        _cell("def f(x):\n    \"\"\"doc\"\"\"\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION", solution=True),
        _cell("r = check(f)\n### BEGIN HIDDEN TESTS\nassert r\n### END HIDDEN TESTS", grade=True, points=1),
        _cell("y = 2 ** 10", solution=True)])
    copy = make_student.student_copy(nb)
    assert copy.cells[0].source == 'def f(x):\n    """doc"""\n    # YOUR CODE HERE\n    ...'
    assert copy.cells[1].source == "r = check(f)"
    assert copy.cells[2].source == "# YOUR CODE HERE\n..."              # a solution cell without a region


@pytest.mark.parametrize("source, meta, message", [
    ("### BEGIN SOLUTION\nx = 1\n### END SOLUTION", {}, "not a solution cell"),
    ("### BEGIN SOLUTION\nx = 1", {"solution": True}, "never closed"),
    ("### BEGIN HIDDEN TESTS\nassert x\n### END HIDDEN TESTS", {}, "not an autograder test cell"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", {"solution": True}, "nested"),
])
def test_misplaced_or_broken_regions_are_refused(source, meta, message):
    nb = nbformat.v4.new_notebook(cells=[_cell(source, **meta) if meta else _cell(source)])
    with pytest.raises(ValueError, match=message):
        make_student.student_copy(nb, "demo.ipynb")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_copy_equals_nbgraders(path):
    pytest.importorskip("nbgrader", reason="nbgrader is not installed (pip install -e '.[teacher]'); CI installs it")
    from nbgrader.preprocessors import ClearHiddenTests, ClearOutput, ClearSolutions
    from traitlets.config import Config

    config = Config()
    exec(compile((REPO / "nbgrader_config.py").read_text(), "nbgrader_config.py", "exec"),
         {"get_config": lambda: config})
    nb = nbformat.read(path, as_version=4)
    theirs = nbformat.from_dict(json.loads(json.dumps(nb)))
    for pre in (ClearSolutions(config=config), ClearHiddenTests(config=config), ClearOutput(config=config)):
        theirs, _ = pre.preprocess(theirs, {})
    ours = make_student.student_copy(nb, path.name)
    assert [c.source for c in ours.cells] == [c.source for c in theirs.cells]
    assert all(not c.get("outputs") for c in theirs.cells if c.cell_type == "code")


# --- the book -------------------------------------------------------------------------------------

def check_page(book_dir: Path, path: Path) -> None:
    """The page of one notebook: MathJax from the book's own folder and nothing from the network,
    embedded figures, a snapshot where each widget was, folded "More checks", no solution."""
    page = (book_dir / f"{path.stem}.html").read_text()
    assert re.search(r'<script src="_static/mathjax/MathJax\.js\?config=[^"]+">', page)
    assert (book_dir / "_static" / "mathjax" / "fonts" / "HTML-CSS" / "STIX-Web").is_dir()
    remote = re.findall(r'(?:src|href)\s*=\s*["\']\s*(?:https?:)?//[^"\']*|url\(\s*["\']?(?:https?:)?//[^)]*',
                        page, re.I)
    assert not remote, f"{path.stem}.html loads from the network: {remote[:3]}"
    assert "$" in page and 'href="index.html"' in page
    assert "application/vnd.jupyter.widget" not in page
    if path.stem[:2] != "00":
        assert page.count('src="data:image/png;base64,') >= 2, f"{path.stem}: figures are not embedded"
    for note in re.finditer("Interactive widget", page):
        assert 'src="data:image/png;base64,' in page[note.start():note.start() + 4000], \
            f"{path.stem}: no snapshot after a widget note"
    folded = sum("more-checks" in c.metadata.get("tags", []) for c in nbformat.read(path, as_version=4).cells)
    assert page.count('<details class="course-checks">') == folded
    assert "course-solution" not in page.replace("details.course-solution", "")


def test_index_follows_the_course_map(tmp_path):
    build_book.write_course_index(tmp_path, ALL_NOTEBOOKS, timings={})
    index = (tmp_path / "index.html").read_text()
    links = re.findall(r'href="([^"]+\.html)"', index)
    assert links == [f"{p.stem}.html" for p in ALL_NOTEBOOKS], links
    assert "MathJax.js" in index and "the student copy" in index
    course_map = build_book.course_map(REPO / "notebooks")        # notebook 00, sec. 1
    assert sorted(course_map) == [p.stem[:2] for p in ALL_NOTEBOOKS], f"notebook 00's course map: {sorted(course_map)}"


@pytest.fixture(scope="module")
def unexecuted_book(tmp_path_factory):
    """index.html and the student page of notebook 02, exported without running it (the math is in its text)."""
    out = tmp_path_factory.mktemp("math")
    build_book.prepare(out)
    build_book.write_course_index(out, ALL_NOTEBOOKS, timings={})
    path = next(p for p in ALL_NOTEBOOKS if p.stem.startswith("02"))
    pages = build_book.page_list(ALL_NOTEBOOKS)
    i = [name for name, _ in pages].index(path.stem + ".html")
    body, _ = build_book.exporter().from_notebook_node(
        make_student.student_copy(nbformat.read(path, as_version=4), path.name),
        resources={"metadata": {"name": pages[i][1]}, "book_head": build_book.MATHJAX_HEAD + build_book.BOOK_CSS,
                   "book_nav": build_book.nav(pages, i), "fold_solutions": False})
    (out / pages[i][0]).write_text(body, encoding="utf-8")
    return out, path.stem


@pytest.mark.skipif(missing_browser() is not None, reason=str(missing_browser()))
@pytest.mark.parametrize("which", ["index", "page"])
def test_math_renders_offline_in_chromium(unexecuted_book, which):
    out, stem = unexecuted_book
    name = "index" if which == "index" else stem
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p, chromium(p) as ctx:
        blocked = []

        def block(route):
            blocked.append(route.request.url)
            route.abort()
        ctx.route(re.compile(r"^(https?|wss?|ftp):"), block)
        page = ctx.new_page()
        page.goto((out / f"{name}.html").as_uri())
        page.wait_for_function("() => window.MathJax && MathJax.Hub && MathJax.Hub.queue.pending === 0 "
                               "&& document.querySelectorAll('.MathJax').length > 0", timeout=120_000)
        typeset = page.evaluate("document.querySelectorAll('.MathJax').length")
        errors = page.evaluate("document.querySelectorAll('.MathJax_Error, merror').length")
        raw = page.evaluate("document.body.innerText.includes('Math Processing Error')")
    assert typeset > 5 and errors == 0 and not raw, (typeset, errors, raw)
    assert not blocked, f"the page tried the network: {blocked[:3]}"
