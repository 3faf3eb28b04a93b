"""Build the static HTML course: run every notebook, export it to HTML, write an index page.

    python scripts/build_book.py                      # full run of the student copies into _book/
    FAST=1 python scripts/build_book.py               # quick run: every notebook in FAST mode
    python scripts/build_book.py --solutions          # the teacher's book, solutions folded
    python scripts/build_book.py --out DIR notebooks/00_welcome.ipynb notebooks/01_forward_process.ipynb

(`make book`, `make book FAST=1`, `make book SOLUTIONS=1`.) Open _book/index.html from disk: the
pages need no network. The published book (.github/workflows/book.yml) is the student copy, as
`make student` writes it (scripts/make_student.py): a public page must not hand out the answers.

- Math: MathJax 2.7 from the PyPI package `jupyter-server-mathjax` (the Jupyter project's own
  copy), copied into _book/_static/mathjax and loaded by a relative path. nbconvert's default page
  loads MathJax from a CDN, which fails offline; a copy from PyPI needs no Node.js at build time
  and is installed by the same pip that installs the course.
- Widgets: a static page has no kernel, so sliders cannot move. Each widget is replaced by the
  output it showed at the controls' starting values, with a note naming them (a progress bar by
  its text); every notebook also draws the same thing at fixed values in an ordinary static figure.
- Folded cells: "More checks" cells (tag `more-checks`) and, in the teacher's book, solution cells
  (nbgrader metadata `solution: true`) are folded into a <details> element, closed by default.
- The index page follows the course map, the table in section 1 of notebook 00.
"""
from __future__ import annotations

import argparse
import copy
import html
import os
import re
import shutil
import sys
import time
from pathlib import Path

import nbformat
from jinja2 import DictLoader
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from nbconvert import HTMLExporter

from kernel_poll import patch_nbclient  # noqa: E402
from make_student import student_copy  # noqa: E402

patch_nbclient()                  # short polls: a missed kernel reply costs a second (kernel_poll.py)

REPO = Path(__file__).resolve().parent.parent
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
MATHJAX_DIR = "_static/mathjax"

# MathJax 2 configuration: nbconvert's own (base/mathjax.html.j2), with the STIX web fonts that the
# jupyter-server-mathjax package ships (it has no TeX fonts).
MATHJAX_HEAD = """<script type="text/x-mathjax-config">
MathJax.Hub.Config({
  TeX: {equationNumbers: {autoNumber: "AMS", useLabelIds: true}},
  tex2jax: {inlineMath: [["$", "$"], ["\\\\(", "\\\\)"]], displayMath: [["$$", "$$"], ["\\\\[", "\\\\]"]],
            processEscapes: true, processEnvironments: true},
  displayAlign: "center",
  messageStyle: "none",
  "HTML-CSS": {availableFonts: [], webFont: "STIX-Web", imageFont: null, preferredFont: null,
               linebreaks: {automatic: true}}
});
</script>
<script src="%s/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"></script>
""" % MATHJAX_DIR

BOOK_CSS = """<style>
.course-nav {display: flex; gap: 1.5em; padding: 0.6em 1em; margin: 0 0 1em 0; font-family: sans-serif;
             border-bottom: 1px solid #ccc; background: #f7f7f7;}
.course-nav a {text-decoration: none;}
.course-widget-note {font-style: italic; color: #555; border-left: 3px solid #8ab; padding-left: 0.6em;}
details.course-solution, details.course-checks {border: 1px dashed #aaa; padding: 0.3em 0.6em; margin: 0.5em 0;}
details.course-solution > summary, details.course-checks > summary {cursor: pointer; font-family: sans-serif; color: #555;}
</style>
"""

# A page of the book: nbconvert's "lab" page without anything it would fetch from the network
# (require.js, the widget manager, mermaid), with the local MathJax and a navigation bar.
PAGE_TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_js_mathjax -%}
{{ resources.book_head }}
{%- endblock html_head_js_mathjax -%}
{%- block body_header -%}
{{ super() }}
{{ resources.book_nav }}
{%- endblock body_header -%}
{% block body_footer %}
{{ resources.book_nav }}
{{ super() }}
{% endblock body_footer %}
{% block codecell %}
{%- if resources.fold_solutions and cell.metadata.get('nbgrader', {}).get('solution') -%}
<details class="course-solution"><summary>Solution (click to open; try the exercise first)</summary>
{{ super() }}
</details>
{%- elif 'more-checks' in cell.metadata.get('tags', []) -%}
<details class="course-checks"><summary>More checks (click to open)</summary>
{{ super() }}
</details>
{%- else -%}
{{ super() }}
{%- endif -%}
{% endblock codecell %}
"""


def mathjax_source() -> Path:
    """The MathJax 2.7 folder of the jupyter-server-mathjax package, or exit with what to install."""
    try:
        import jupyter_server_mathjax
    except ImportError:
        sys.exit("make book renders math offline with MathJax from the PyPI package "
                 "jupyter-server-mathjax, which is missing: pip install jupyter-server-mathjax")
    return Path(jupyter_server_mathjax.__file__).parent / "static"


def course_map(notebooks: Path) -> dict[str, tuple[str, str]]:
    """{"01": (topic, what happens there)} from the course-map table of notebook 00, sec. 1."""
    welcome = sorted(notebooks.glob("00_*.ipynb"))
    rows = {}
    if welcome:
        for cell in nbformat.read(welcome[0], as_version=4).cells:
            for line in cell.source.splitlines():
                m = re.match(r"\|\s*\*\*(\d\d)\*\*\s*\|([^|]*)\|([^|]*)\|", line)
                if m:
                    rows[m.group(1)] = (m.group(2).strip(), m.group(3).strip())
    return rows


def title_of(nb, path: Path) -> str:
    """The notebook's first '# ' heading, else its file name."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^# (.+)$", cell.source, re.M)
            if m:
                return m.group(1).strip()
    return path.stem


CONTAINERS = ("OutputModel", "HTMLModel", "HTMLMathModel", "LabelModel", "LayoutModel")


def _describe(model) -> str | None:
    """The "description = value" of a control (slider, dropdown, checkbox, ...), else None."""
    name, st = model.get("model_name", ""), model.get("state", {})
    if name in CONTAINERS or "Box" in name or "Progress" in name or "Style" in name:
        return None
    if "index" in st and "_options_labels" in st:                      # selection widgets
        labels, index = st["_options_labels"], st["index"]
        value = [labels[i] for i in index] if isinstance(index, list) else (
            labels[index] if isinstance(index, int) and 0 <= index < len(labels) else None)
    elif "value" in st:
        value = st["value"]
    else:
        return None
    return f"{st.get('description') or 'value'} = {value}"


def snapshot_widgets(nb) -> int:
    """Replace each widget view in the outputs by a note and what its Output widgets captured.

    Returns the number of widget views replaced. A progress bar (tqdm) becomes its text.
    """
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})

    def walk(model_id, seen, found):
        """Collect the outputs, control settings, texts and progress bars below one widget model."""
        if model_id in seen or model_id not in state:
            return
        seen.add(model_id)
        model, st = state[model_id], state[model_id].get("state", {})
        name = model.get("model_name", "")
        if name == "OutputModel":
            found["outputs"] += st.get("outputs", [])
        elif name in ("HTMLModel", "LabelModel") and st.get("value"):
            found["texts"].append(re.sub(r"<[^>]+>", "", html.unescape(str(st["value"]))).strip())
        elif "Progress" in name:
            found["progress"] = True
        elif _describe(model):
            found["controls"].append(_describe(model))
        for child in st.get("children", []):
            walk(str(child).removeprefix("IPY_MODEL_"), seen, found)

    count = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                outputs.append(out)
                continue
            count += 1
            found = {"outputs": [], "controls": [], "texts": [], "progress": False}
            walk(view.get("model_id"), set(), found)
            if found["progress"] and not found["controls"]:
                note = "Progress: " + " ".join(t for t in found["texts"] if t)
            elif found["controls"]:
                note = (f"Interactive widget: in JupyterLab, moving its controls redraws what follows. "
                        f"This static page shows it at {', '.join(found['controls'])}.")
            elif found["outputs"]:
                note = None                        # an output area whose controls were noted above
            else:
                note = "Interactive widget: live in JupyterLab only."
            if note:
                outputs.append(nbformat.v4.new_output("display_data", data={
                    "text/html": f'<p class="course-widget-note">{html.escape(note)}</p>'}))
            outputs += [nbformat.from_dict(o) for o in found["outputs"]]
        cell.outputs = outputs
    nb.metadata.pop("widgets", None)
    return count


def inline_md(text: str) -> str:
    """Course-map cell text to HTML: escape, `code`, **bold**; $math$ is left to MathJax."""
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)


def nav(pages, i) -> str:
    links = ['<a href="index.html">&#8962; Course map</a>']
    if i > 0:
        links.append(f'<a href="{pages[i - 1][0]}">&larr; {html.escape(pages[i - 1][1])}</a>')
    if i + 1 < len(pages):
        links.append(f'<a href="{pages[i + 1][0]}">{html.escape(pages[i + 1][1])} &rarr;</a>')
    return f'<nav class="course-nav">{" ".join(links)}</nav>'


def write_index(out: Path, entries, fast: bool, solutions: bool = False) -> None:
    """index.html: one line per notebook of the course map, linked when built."""
    items = []
    for number, topic, summary, page, seconds, exists in entries:
        head = (f'<a href="{page}">{number} &mdash; {inline_md(topic)}</a>' if page
                else f"{number} &mdash; {inline_md(topic)} <i>({'not in this build' if exists else 'coming'})</i>")
        timing = f' <span class="meta">(ran in {seconds:.0f} s)</span>' if seconds is not None else ""
        items.append(f"<li>{head}: {inline_md(summary)}{timing}</li>")
    mode = "FAST mode (smaller samples, short training: a smoke run)" if fast else "full run"
    mode += ", with the solutions" if solutions else ", the student copy (exercises without their solutions)"
    (out / "index.html").write_text(f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>Diffusion models from first principles</title>
{MATHJAX_HEAD}
<style>
body {{font-family: sans-serif; max-width: 60em; margin: 2em auto; padding: 0 1em; line-height: 1.5;}}
li {{margin: 0.6em 0;}} .meta {{color: #777; font-size: 90%;}}
</style></head>
<body>
<h1>Diffusion models from first principles</h1>
<p>DDPM (Ho et al. 2020) and DDIM (Song et al. 2020), derived step by step and checked numerically.
The notebooks, executed; the sliders are live only in JupyterLab (<code>make lab</code>).</p>
<ol start="0" style="list-style: none; padding-left: 0;">
{chr(10).join(items)}
</ol>
<p class="meta">Built {time.strftime("%Y-%m-%d %H:%M")}, {mode}. Formulas typeset by a local copy
of MathJax 2.7; no network needed.</p>
</body></html>
""", encoding="utf-8")


def execute(nb, path: Path, timeout: int, tries: int = 2, probe: str | None = None):
    """Run the notebook in a fresh kernel; returns (the executed copy, the probe's outputs).

    probe: code run after the last cell in the same kernel (its cell is not part of the copy).
    A cell that raises fails the build at once. A cell that outlasts `timeout`, or a kernel that
    dies, gets one more try in a new kernel: nbclient can lose a kernel's reply on an ipywidgets
    cell and then wait out the whole timeout (jupyter/nbclient#312; seen once on a 2-core CI run).
    """
    for attempt in range(1, tries + 1):
        run = copy.deepcopy(nb)
        if probe is not None:
            run.cells.append(nbformat.v4.new_code_cell(probe))
        try:
            NotebookClient(run, timeout=timeout, kernel_name="python3",
                           resources={"metadata": {"path": str(path.parent)}}).execute()
            outputs = run.cells.pop().outputs if probe is not None else []
            return run, outputs
        except CellExecutionError as e:
            sys.exit(f"[book] {path.name} failed, no book written for it:\n{e}")
        except (CellTimeoutError, DeadKernelError) as e:
            print(f"[book] {path.name}: attempt {attempt} of {tries} stopped: {type(e).__name__}: "
                  f"{str(e)[:300]}", flush=True)
    sys.exit(f"[book] {path.name}: no run finished in {tries} attempts (timeout {timeout} s per cell)")


def exporter() -> HTMLExporter:
    """nbconvert's "lab" HTML exporter with the book's page template."""
    return HTMLExporter(template_name="lab", extra_loaders=[DictLoader({"book.html.j2": PAGE_TEMPLATE})],
                        template_file="book.html.j2")


def prepare(out: Path) -> None:
    """The book's folder, emptied of old pages, with its own copy of MathJax."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.html"):
        stale.unlink()
    shutil.copytree(mathjax_source(), out / MATHJAX_DIR, dirs_exist_ok=True)


def build_page(path: Path, out: Path, pages: list, timeout: int, solutions: bool = False,
               probe: str | None = None, html_exporter: HTMLExporter | None = None) -> dict:
    """Run one notebook (its student copy unless `solutions`) and write its page into `out`.

    pages: [(file name, title)] of the whole book, for the navigation bar.
    Returns {"seconds", "probe" (outputs of `probe`), "notebook" (the executed copy)}.
    """
    nb = nbformat.read(path, as_version=4)
    nb = nb if solutions else student_copy(nb, path.name)
    fast = os.environ.get("FAST") == "1"
    print(f"[book] running {path.name} ({'FAST' if fast else 'full'}, "
          f"{'with solutions' if solutions else 'student copy'}) ...", flush=True)
    start = time.perf_counter()
    nb, probed = execute(nb, path, timeout, probe=probe)
    seconds = time.perf_counter() - start
    run = {"seconds": seconds, "probe": probed, "notebook": copy.deepcopy(nb)}
    widgets = snapshot_widgets(nb)
    i = [name for name, _ in pages].index(path.stem + ".html")
    body, _ = (html_exporter or exporter()).from_notebook_node(nb, resources={
        "metadata": {"name": pages[i][1]}, "book_head": MATHJAX_HEAD + BOOK_CSS, "book_nav": nav(pages, i),
        "fold_solutions": solutions})
    (out / pages[i][0]).write_text(body, encoding="utf-8")
    print(f"[book] {path.name}: {seconds:.1f} s, {widgets} widget(s) as snapshots -> {out / pages[i][0]}", flush=True)
    return run


def page_list(paths: list[Path]) -> list:
    """[(file name, title)] of the notebooks, in order."""
    return [(p.stem + ".html", title_of(nbformat.read(p, as_version=4), p)) for p in paths]


def write_course_index(out: Path, paths: list[Path], timings: dict, solutions: bool = False) -> None:
    """index.html from notebook 00's course map, linking the notebooks in `paths`."""
    cmap = course_map(paths[0].parent)
    built = dict(zip((p.stem[:2] for p in paths), page_list(paths)))
    entries = []
    for number in sorted(set(cmap) | set(built)):
        topic, summary = cmap.get(number, (built.get(number, ("", number))[1], ""))
        page = built.get(number, (None,))[0]
        exists = any(paths[0].parent.glob(f"{number}_*.ipynb"))
        entries.append((number, topic, summary, page, timings.get(number), exists))
    write_index(out, entries, os.environ.get("FAST") == "1", solutions)


def build(paths: list[Path], out: Path, timeout: int, solutions: bool = False, probe: str | None = None) -> dict:
    """Run and export each notebook (its student copy unless `solutions`); write the index.

    Returns {notebook stem: build_page's record}.
    """
    prepare(out)
    pages, html_exporter = page_list(paths), exporter()
    runs = {p.stem: build_page(p, out, pages, timeout, solutions, probe, html_exporter) for p in paths}
    write_course_index(out, paths, {stem[:2]: run["seconds"] for stem, run in runs.items()}, solutions)
    return runs


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument("--out", type=Path, default=REPO / "_book")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds allowed per cell")
    parser.add_argument("--solutions", action="store_true", help="the teacher's book: with the solutions, folded")
    args = parser.parse_args(argv)
    paths = sorted(p.resolve() for p in (args.notebooks or (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")))
    if not paths:
        sys.exit("no notebooks to build")
    start = time.perf_counter()
    build(paths, args.out, args.timeout, solutions=args.solutions)
    print(f"[book] wrote {args.out / 'index.html'} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
