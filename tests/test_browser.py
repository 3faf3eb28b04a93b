"""Sliders tested as a student uses them: JupyterLab in a real browser (headless Debian Chromium).

For each notebook in NOTEBOOKS: JupyterLab starts on localhost (FAST=1, a token, a temporary copy
of notebooks/; tests/browser_util.py), Chromium opens the notebook, "Run All Cells" is chosen from
the Run menu, and the test waits until every code cell has run and checks that none raised. Then
each of the notebook's sliders (found by its label, the widget's description) is moved as a
student moves it, and after every move the readout must show a value on the expected side and the
picture in the slider's box must change (screenshots compared pixel by pixel):

1. keyboard: a click on the handle, then N_KEY_MOVES presses alternating ArrowRight/ArrowLeft
   (starting towards the side with room), each one step of the slider;
2. PageUp (or PageDown at the top): a jump of several steps;
3. a mouse drag of 40 % of the track towards the end with more room.

The slider must also sit next to a static figure (docs/design.md: the HTML export shows no live
widgets): its own cell or the nearest code cell before or after it has an image/png output.

Latency. For every key press the time from the keydown event to the new picture decoded in the page
is measured in the page (performance.now()); it covers everything a student waits for: the widget
message to the kernel, the callback, the PNG back, and the browser decoding it. The course's target
is under 1 s on a CPU. Asserted, per slider, over its 10 timed presses (9 arrows and a page jump):

* median <= LATENCY_MEDIAN_LIMIT_S = 0.5 s, half the target: a typical press must leave room for a
  laptop slower or busier than CI. The bound checks the 1 s target with room to spare, not how a
  slider draws.
* worst <= LATENCY_MAX_LIMIT_S = 1.5 s: a single press may wait for a core that another process
  holds, so the worst press gets 1.5x the target rather than the target.
The latencies measured under load (the margins of both bounds, and a slow slider that failed
them): README, Tests.

Both can be changed with SLIDER_LATENCY_MEDIAN_S and SLIDER_LATENCY_MAX_S for a slower machine.
The drag is not timed against a bound: the sliders update continuously while the handle moves, so
the number of pictures and the delay of the last one after the release are reported only.

Screenshots (before; after the first key press, PageUp and the drag; the whole page on failure),
the JupyterLab log and latency.json (every press) go to
$BROWSER_ARTIFACTS/<notebook>/<slider>/ or tests/_artifacts/browser/<notebook>/<slider>/ and are
kept, so a run can be inspected. The test skips, saying why, only where the `playwright` package or
a Chromium binary is missing (.ci/run installs both; never `playwright install`).

False-failure rate: the notebooks are seeded and the verdicts (readout moved, pixels changed,
static figure present) are not random; waits are generous (minutes) for a shared 2-core machine.
The latency bounds are the only verdicts that depend on the machine's load: no rate can be computed
for them; the design is a wide margin between the bounds and the latencies measured under more load
than CI's serial `make test` puts on its 2 cores (README, Tests, with the run time of each notebook
here).
"""
from __future__ import annotations

import json
import os
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from browser_util import changed_fraction, chromium, jupyterlab, missing_browser

ARTIFACTS = Path(os.environ.get("BROWSER_ARTIFACTS") or Path(__file__).parent / "_artifacts" / "browser")
LATENCY_MEDIAN_LIMIT_S = float(os.environ.get("SLIDER_LATENCY_MEDIAN_S", "0.5"))   # see the docstring
LATENCY_MAX_LIMIT_S = float(os.environ.get("SLIDER_LATENCY_MAX_S", "1.5"))
N_KEY_MOVES = 9              # arrow-key presses timed per slider (and one PageUp/PageDown)
MIN_CHANGED = 0.001          # at least 0.1 % of the figure's pixels must change after a move
DRAG_FRACTION = 0.4          # the drag covers this fraction of the slider's track


@dataclass(frozen=True)
class Slider:
    """One slider: its description (the label the notebook gives it), and which one if several share it."""

    description: str
    index: int = 0

    @property
    def name(self) -> str:
        return re.sub(r"[^A-Za-z0-9]+", "_", self.description)


@dataclass(frozen=True)
class NotebookCase:
    """A notebook, run once in the browser, and the sliders to move in it."""

    notebook: str
    sliders: tuple[Slider, ...]

    @property
    def name(self) -> str:
        return Path(self.notebook).stem


NOTEBOOKS = [
    NotebookCase("01_forward_process.ipynb", (Slider("t"),)),               # IntSlider, t = 0..T
    NotebookCase("06_ddim.ipynb", (Slider("eta"), Slider("steps"))),          # FloatSlider, SelectionSlider
    NotebookCase("07_latent_space.ipynb", (Slider("kappa"),)),                # FloatSlider, 21 values
    NotebookCase("08_score_and_ode.ipynb", (Slider("calls"),)),               # network calls, precomputed
    NotebookCase("09_guidance.ipynb", (Slider("w"),)),                        # guidance weight, precomputed
]

pytestmark = pytest.mark.skipif(missing_browser() is not None, reason=str(missing_browser()))

# JavaScript run in the page. The notebook widget, and its model's cells, through the app object
# that JupyterLab exposes with --LabApp.expose_app_in_browser.
RUN_STATE = """() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.content || !panel.content.model) return null;
  const cells = panel.content.model.cells, errors = [];
  let code = 0, done = 0;
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type !== 'code') continue;
    code++;
    if (c.executionCount) done++;
    for (let j = 0; j < c.outputs.length; j++) {
      const o = c.outputs.get(j).toJSON();
      if (o.output_type === 'error') errors.push(`cell ${i}: ${o.ename}: ${o.evalue}`);
    }
  }
  const status = panel.node.querySelector('.jp-Notebook-ExecutionIndicator');
  return {code, done, errors, idle: !!status && status.getAttribute('data-status') === 'idle'};
}"""

KERNEL_READY = """() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = panel && panel.sessionContext && panel.sessionContext.session
                 && panel.sessionContext.session.kernel;
  return !!(panel.context && panel.context.isReady && kernel && kernel.connectionStatus === 'connected'
            && kernel.status === 'idle');
}"""

# Arm a watcher on the widget box: window.__courseLatency becomes the time (ms) from the next key
# press to the moment the box shows a new picture (an <img> with another src), decoded.
KEY_WATCH = """(box) => {
  const old = (box.querySelector('img') || {}).src;
  let trigger = null;
  const mark = () => { if (trigger === null) trigger = performance.now(); };
  document.addEventListener('keydown', mark, true);
  window.__courseLatency = null;
  const obs = new MutationObserver(() => {
    const img = box.querySelector('img');
    if (!img || !img.src || img.src === old || trigger === null) return;
    obs.disconnect();
    document.removeEventListener('keydown', mark, true);
    const done = () => { window.__courseLatency = performance.now() - trigger; };
    img.decode().then(done, done);
  });
  obs.observe(box, {subtree: true, childList: true, attributes: true});
}"""

# Arm a watcher for a drag: counts the pictures the box shows and notes when the last one came
# and when the mouse button went up (the sliders may update while the handle moves).
DRAG_WATCH = """(box) => {
  let src = (box.querySelector('img') || {}).src;
  const st = {up: null, last: null, updates: 0};
  window.__courseDrag = st;
  document.addEventListener('pointerup', () => { st.up = performance.now(); }, {capture: true, once: true});
  const obs = new MutationObserver(() => {
    const img = box.querySelector('img');
    if (img && img.src && img.src !== src) { src = img.src; st.updates++; st.last = performance.now(); }
  });
  obs.observe(box, {subtree: true, childList: true, attributes: true});
  window.__courseDragStop = () => obs.disconnect();
}"""

# Where the static figure is: the slider's cell and the nearest code cells before and after it,
# with whether each has an image/png output.
NEIGHBOURS = """(cellNode) => {
  const panel = window.jupyterapp.shell.currentWidget;
  const views = panel.content.widgets, cells = panel.content.model.cells;
  const i = views.findIndex(w => w.node === cellNode);
  if (i < 0) return null;
  const png = (k) => {
    const c = cells.get(k);
    for (let j = 0; j < c.outputs.length; j++) {
      const o = c.outputs.get(j).toJSON();
      if (o.data && o.data['image/png']) return true;
    }
    return false;
  };
  const near = [i];
  for (const step of [-1, 1]) {
    let k = i + step;
    while (k >= 0 && k < cells.length && cells.get(k).type !== 'code') k += step;
    if (k >= 0 && k < cells.length) near.push(k);
  }
  return near.map(k => ({cell: k, png: png(k)}));
}"""


def _number(text: str) -> float:
    m = re.search(r"-?\d+(\.\d+)?(e-?\d+)?", text)
    assert m, f"the slider's readout shows {text!r}, not a number"
    return float(m.group())


def _run_all(page, timeout_s: float = 600) -> None:
    """Run all cells from the Run menu and wait until each code cell has run (or one failed)."""
    page.wait_for_function(KERNEL_READY, timeout=180_000, polling=200)
    for attempt in range(3):          # the menu, as a student uses it; again if the click got lost
        page.locator(".jp-NotebookPanel .jp-Cell").first.click()        # the notebook has the focus
        page.locator(".lm-MenuBar-item", has_text="Run").first.click()
        item = page.locator(".lm-Menu-item", has_text="Run All Cells").first
        item.wait_for(state="visible", timeout=30_000)
        item.click()
        started = time.monotonic()
        while time.monotonic() - started < 20:
            state = page.evaluate(RUN_STATE)
            if state and (state["done"] or not state["idle"]):
                break
            time.sleep(0.5)
        else:
            print(f"Run All Cells, attempt {attempt + 1}: nothing started after 20 s; trying again")
            continue
        break
    deadline = time.monotonic() + timeout_s
    while True:
        state = page.evaluate(RUN_STATE)
        if state and state["idle"] and (state["errors"] or state["code"] == state["done"]):
            break
        assert time.monotonic() < deadline, f"the notebook did not finish within {timeout_s:.0f} s: {state}"
        time.sleep(1)
    assert not state["errors"], f"cells raised in the browser: {state['errors']}"


def _wait_idle(page, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not (page.evaluate(RUN_STATE) or {}).get("idle"):
        assert time.monotonic() < deadline, f"the kernel stayed busy for {timeout_s:.0f} s after a slider move"
        time.sleep(0.1)


def _ancestor(css_class: str) -> str:
    """XPath to the nearest ancestor <div> that has `css_class` among its classes (not as a prefix)."""
    return f"xpath=ancestor::div[contains(concat(' ', normalize-space(@class), ' '), ' {css_class} ')][1]"


class SliderUnderTest:
    """The slider's elements in the page, and the checks made after each move."""

    def __init__(self, page, slider: Slider, artifacts: Path):
        label = page.locator(".widget-slider .widget-label", has_text=re.compile(
            rf"^\s*{re.escape(slider.description)}\s*$"))
        assert label.count() > slider.index, f"no slider labelled {slider.description!r} (number {slider.index})"
        self.page, self.artifacts = page, artifacts
        self.el = label.nth(slider.index).locator(_ancestor("widget-slider"))
        self.box = self.el.locator(_ancestor("widget-vbox"))          # the slider's box, with its picture
        self.cell = self.el.locator(_ancestor("jp-Cell"))             # the notebook cell that displays it
        self.handle = self.el.locator(".noUi-handle").first
        self.track = self.el.locator(".noUi-target").first
        self.readout = self.el.locator(".widget-readout").first
        self.img = self.box.locator("img").first
        self.box.scroll_into_view_if_needed()
        self.img.wait_for(state="visible", timeout=120_000)
        self.png = self.img.screenshot()
        (artifacts / "before.png").write_bytes(self.png)

    def value(self) -> float:
        return _number(self.readout.inner_text())

    def room_right(self) -> bool:
        """True when the handle is in the left half of the track (more room to the right)."""
        now, lo, hi = (float(self.handle.get_attribute(a)) for a in ("aria-valuenow", "aria-valuemin", "aria-valuemax"))
        return now - lo < hi - now

    def check_moved(self, what: str, before: float, up: bool, save: bool) -> tuple[float, float]:
        """After a move: the readout went the right way, the picture changed. Returns (value, changed)."""
        after = self.value()
        assert (after > before) if up else (after < before), (
            f"{what}: the readout went from {before:g} to {after:g}, expected {'up' if up else 'down'}")
        png = self.img.screenshot()
        changed = changed_fraction(self.png, png)
        if save:
            (self.artifacts / f"after_{what}.png").write_bytes(png)
        assert changed > MIN_CHANGED, (f"{what}: the figure did not change ({changed:.2%} of its pixels moved, "
                                       f"need {MIN_CHANGED:.1%}); see {self.artifacts}")
        self.png = png
        return after, changed

    def key_move(self, key: str, what: str, save: bool = False) -> float:
        """Press `key` on the focused handle; return the seconds until the new picture was shown."""
        before = self.value()
        self.box.evaluate(KEY_WATCH)
        self.page.keyboard.press(key)
        self.page.wait_for_function("() => window.__courseLatency !== null", timeout=120_000, polling=10)
        latency = round(self.page.evaluate("() => window.__courseLatency") / 1000, 4)
        _wait_idle(self.page)
        after, changed = self.check_moved(what, before, key in ("ArrowRight", "PageUp"), save)
        print(f"  {what:>9s} {key:10s}: {before:g} -> {after:g}, {changed:5.1%} of the pixels changed, "
              f"picture after {1000 * latency:4.0f} ms")
        return latency

    def drag(self) -> dict:
        """Drag the handle over DRAG_FRACTION of the track towards the side with more room."""
        before, right = self.value(), self.room_right()
        b, track = self.handle.bounding_box(), self.track.bounding_box()
        x, y = b["x"] + b["width"] / 2, b["y"] + b["height"] / 2
        dx = DRAG_FRACTION * track["width"] * (1 if right else -1)
        self.box.evaluate(DRAG_WATCH)
        self.page.mouse.move(x, y)
        self.page.mouse.down()
        self.page.mouse.move(x + dx, y, steps=12)
        self.page.mouse.up()
        deadline = time.monotonic() + 120
        while True:           # settled: the kernel idle, and no new picture for a second
            st = self.page.evaluate("() => Object.assign({now: performance.now()}, window.__courseDrag)")
            quiet = st["updates"] and st["up"] is not None and st["now"] - max(st["last"], st["up"]) > 1000
            if quiet and (self.page.evaluate(RUN_STATE) or {}).get("idle"):
                break
            assert time.monotonic() < deadline, f"drag: no settled new picture within 120 s ({st})"
            time.sleep(0.2)
        self.page.evaluate("() => window.__courseDragStop()")
        after, changed = self.check_moved("drag", before, right, save=True)
        lag = round(max(0.0, st["last"] - st["up"]) / 1000, 4)
        print(f"  {'drag':>9s} {dx:+5.0f} px   : {before:g} -> {after:g}, {changed:5.1%} of the pixels changed, "
              f"{st['updates']} picture(s), the last {1000 * lag:.0f} ms after the release")
        return {"pictures": st["updates"], "last_after_release_s": lag}


def _static_figure_nearby(page, s: SliderUnderTest, description: str) -> None:
    near = page.evaluate(NEIGHBOURS, s.cell.element_handle())
    assert near, f"slider {description!r}: its cell was not found in the notebook"
    assert any(c["png"] for c in near), (
        f"slider {description!r} (cell {near[0]['cell']}) has no static figure (an image/png output) in its own "
        f"cell or the nearest code cells before and after it ({[c['cell'] for c in near[1:]]}); the HTML "
        "export shows no live widgets (docs/design.md)")


def _exercise(page, slider: Slider, artifacts: Path) -> dict:
    """All moves of one slider; returns what was measured (for latency.json)."""
    s = SliderUnderTest(page, slider, artifacts)
    _static_figure_nearby(page, s, slider.description)
    print(f"{artifacts.parent.name}, slider {slider.description!r}:")
    s.handle.click()                        # a click on the handle focuses it, as a student does
    first, back = ("ArrowRight", "ArrowLeft") if s.room_right() else ("ArrowLeft", "ArrowRight")
    latencies = [s.key_move(first if i % 2 == 0 else back, f"key_{i + 1}", save=i == 0) for i in range(N_KEY_MOVES)]
    latencies.append(s.key_move("PageUp" if s.room_right() else "PageDown", "page", save=True))
    drag = s.drag()
    median, worst = statistics.median(latencies), max(latencies)
    print(f"{artifacts.parent.name}, slider {slider.description!r}: key press -> new picture: median "
          f"{1000 * median:.0f} ms, worst {1000 * worst:.0f} ms over {len(latencies)} presses (target 1 s; "
          f"asserted median <= {LATENCY_MEDIAN_LIMIT_S:g} s, worst <= {LATENCY_MAX_LIMIT_S:g} s); "
          f"screenshots in {artifacts}")
    return {"key_latency_s": latencies, "median_s": median, "worst_s": worst, "drag": drag}


@pytest.mark.parametrize("case", NOTEBOOKS, ids=lambda c: c.name)
def test_sliders_in_browser(case: NotebookCase):
    from playwright.sync_api import sync_playwright

    folder = ARTIFACTS / case.name
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("**/*.png"):            # screenshots of an earlier run
        old.unlink()
    results = {}
    with jupyterlab(folder / "jupyterlab.log") as (base, token, _), sync_playwright() as p, chromium(p) as ctx:
        page = ctx.new_page()
        page.set_default_timeout(60_000)
        try:
            page.goto(f"{base}/lab/tree/{case.notebook}?reset&token={token}", timeout=120_000)
            page.wait_for_selector(".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle']",
                                   timeout=180_000)
            started = time.monotonic()
            _run_all(page)
            print(f"{case.notebook}: all cells ran in the browser in {time.monotonic() - started:.0f} s")
            for slider in case.sliders:
                artifacts = folder / slider.name
                artifacts.mkdir(parents=True, exist_ok=True)
                results[slider.description] = _exercise(page, slider, artifacts)
        except Exception:
            page.screenshot(path=str(folder / "failure_page.png"), full_page=True)
            raise
        finally:
            page.close()
            if results:
                (folder / "latency.json").write_text(json.dumps(
                    {"sliders": results, "target_s": 1.0, "median_limit_s": LATENCY_MEDIAN_LIMIT_S,
                     "max_limit_s": LATENCY_MAX_LIMIT_S, "cpus": os.cpu_count()}, indent=1))
    for description, r in results.items():
        assert r["median_s"] <= LATENCY_MEDIAN_LIMIT_S and r["worst_s"] <= LATENCY_MAX_LIMIT_S, (
            f"slider {description!r}: the picture followed a key press after {1000 * r['median_s']:.0f} ms (median) "
            f"and {1000 * r['worst_s']:.0f} ms (worst); the bounds are {LATENCY_MEDIAN_LIMIT_S:g} s and "
            f"{LATENCY_MAX_LIMIT_S:g} s (the course's target is 1 s on a CPU)")
