"""`make book` (scripts/build_book.py): the static HTML course, built from notebooks 00-02 in FAST mode.

Checks that the index follows the course map and links every built notebook; that each page loads
MathJax from the book's own folder and nothing (no script, style, font or image) from the
network; that figures are embedded as data URIs, each slider's snapshot sits where the widget
was, and solutions are folded away. Where Chromium and playwright are present, the pages are also
opened from disk with every non-file request blocked, and MathJax must typeset their formulas
without an error: the book works offline.

False-failure rate: 0 (no randomness in the verdicts; the notebooks are seeded). Runtime: about
40-60 s on 2 cores, nearly all of it running the three notebooks.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from browser_util import chromium, missing_browser

REPO = Path(__file__).resolve().parent.parent
BUILT = ["00_welcome", "01_forward_process", "02_posterior"]

pytest.importorskip("jupyter_server_mathjax", reason="make book needs the PyPI package jupyter-server-mathjax "
                                                     "(MathJax for offline math); pip install jupyter-server-mathjax")


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    # --timeout: seconds per cell (the slowest takes ~10 s); a lost kernel reply costs 2 x 240 s, not hours
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "build_book.py"), "--out", str(out),
                          "--timeout", "240", *[str(REPO / "notebooks" / f"{n}.ipynb") for n in BUILT]],
                         capture_output=True, text=True, env={**os.environ, "FAST": "1"},
                         stdin=subprocess.DEVNULL, timeout=1500)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return out


def test_index_follows_the_course_map(book):
    index = (book / "index.html").read_text()
    links = re.findall(r'href="([^"]+\.html)"', index)
    assert links == [f"{n}.html" for n in BUILT], links
    for number in ["03", "04", "05", "06", "07"]:              # the rest of the map, not built here
        assert re.search(rf"<li>{number} &mdash;", index), f"course map line {number} missing"
    assert "MathJax.js" in index


@pytest.mark.parametrize("name", BUILT)
def test_page_is_self_contained(book, name):
    page = (book / f"{name}.html").read_text()
    assert re.search(r'<script src="_static/mathjax/MathJax\.js\?config=[^"]+">', page)
    assert (book / "_static" / "mathjax" / "MathJax.js").is_file()
    assert (book / "_static" / "mathjax" / "fonts" / "HTML-CSS" / "STIX-Web").is_dir()
    remote = re.findall(r'(?:src|href)\s*=\s*["\']\s*(?:https?:)?//[^"\']*|url\(\s*["\']?(?:https?:)?//[^)]*',
                        page, re.I)
    assert not remote, f"{name}.html loads from the network: {remote[:3]}"
    assert "$" in page and ("\\tag{" in page or "\\frac" in page or "\\bar" in page)    # math for MathJax
    assert 'href="index.html"' in page                                                      # navigation


def test_figures_widgets_and_solutions(book):
    for name in BUILT:
        page = (book / f"{name}.html").read_text()
        assert page.count('src="data:image/png;base64,') >= 2, f"{name}: figures are not embedded"
        assert "application/vnd.jupyter.widget" not in page
    forward = (book / "01_forward_process.html").read_text()
    note = forward.index("Interactive widget")
    assert "at t = 250" in forward[note:note + 400]
    assert 'src="data:image/png;base64,' in forward[note:note + 3000], "no snapshot after the widget note"
    assert forward.count('<details class="course-solution">') == 3
    assert (book / "02_posterior.html").read_text().count('<details class="course-solution">') == 4


@pytest.mark.skipif(missing_browser() is not None, reason=str(missing_browser()))
@pytest.mark.parametrize("name", ["index", "02_posterior"])
def test_math_renders_offline_in_chromium(book, name):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p, chromium(p) as ctx:
        blocked = []

        def block(route):
            blocked.append(route.request.url)
            route.abort()
        ctx.route(re.compile(r"^(https?|wss?|ftp):"), block)
        page = ctx.new_page()
        page.goto((book / f"{name}.html").as_uri())
        page.wait_for_function("() => window.MathJax && MathJax.Hub && MathJax.Hub.queue.pending === 0 "
                               "&& document.querySelectorAll('.MathJax').length > 0", timeout=120_000)
        typeset = page.evaluate("document.querySelectorAll('.MathJax').length")
        errors = page.evaluate("document.querySelectorAll('.MathJax_Error, merror').length")
        raw = page.evaluate("document.body.innerText.includes('Math Processing Error')")
    assert typeset > 5 and errors == 0 and not raw, (typeset, errors, raw)
    assert not blocked, f"the page tried the network: {blocked[:3]}"
