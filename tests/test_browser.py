"""Sliders tested as a student uses them: JupyterLab in a real browser (headless Debian Chromium).

For each entry of SLIDERS: JupyterLab starts on localhost (FAST=1, a token, a temporary copy of
notebooks/; tests/browser_util.py), Chromium opens the notebook, "Run All Cells" is chosen from the
Run menu, and the test waits until every code cell has run and checks that none raised. Then the
slider is moved as a student moves it, twice: with the keyboard (click the handle, ArrowRight,
then PageUp) and by dragging the handle with the mouse. After each move the readout must show a
larger value and the figure must change: screenshots of the figure before and after are compared
pixel by pixel. The time from the key press (or the mouse release) to the new figure in the page
is measured in the page itself and reported; the course's target is under 1 s on a CPU.

Screenshots (before, after the keys, after the drag, the whole page on failure), the JupyterLab
log and latency.json go to $BROWSER_ARTIFACTS/<case>/ or tests/_artifacts/browser/<case>/ and are
kept, so a failing run can be inspected. The test skips, saying why, only where the `playwright`
package or a Chromium binary is missing (.ci/run installs both; never `playwright install`).

False-failure rate: the notebooks are seeded and the verdicts (readout moved, pixels changed) are
not random; waits are generous (minutes) for a shared 2-core machine. The only timing assertion
is LATENCY_LIMIT_S, a guard against a slider that hangs, set far above the 1 s target because
the CI machine is shared; the measured latency is printed (pytest -s, or latency.json).
Runtime: about 40-60 s per slider on 2 cores.
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from browser_util import changed_fraction, chromium, jupyterlab, missing_browser

ARTIFACTS = Path(os.environ.get("BROWSER_ARTIFACTS") or Path(__file__).parent / "_artifacts" / "browser")
LATENCY_LIMIT_S = float(os.environ.get("SLIDER_LATENCY_LIMIT_S", "10"))
MIN_CHANGED = 0.001          # at least 0.1 % of the figure's pixels must change after a move


@dataclass(frozen=True)
class SliderCase:
    """One slider to test: the notebook, the slider's description (its label), which one if several."""

    notebook: str
    description: str
    index: int = 0
    drag_px: int = 150       # how far to drag the handle to the right

    @property
    def name(self) -> str:
        return f"{Path(self.notebook).stem}-{re.sub(r'[^A-Za-z0-9]+', '_', self.description)}"


# One line per slider. Notebooks 06 and 07 add theirs when they land, for example
#   SliderCase("06_ddim.ipynb", "eta"), SliderCase("07_latent_space.ipynb", "lambda").
SLIDERS = [
    SliderCase("01_forward_process.ipynb", "t"),
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

# Arm a watcher on the widget box: window.__courseLatency becomes the time (ms) from the last key
# press or mouse release to the moment a new figure (an <img> with another src) is loaded in the box.
ARM_WATCH = """(box) => {
  const old = (box.querySelector('img') || {}).src;
  let trigger = null;
  const mark = () => { trigger = performance.now(); };
  document.addEventListener('keydown', mark, true);
  document.addEventListener('pointerup', mark, true);
  window.__courseLatency = null;
  const obs = new MutationObserver(() => {
    const img = box.querySelector('img');
    if (!img || !img.src || img.src === old || trigger === null) return;
    obs.disconnect();
    const done = () => { document.removeEventListener('keydown', mark, true);
                         document.removeEventListener('pointerup', mark, true);
                         window.__courseLatency = performance.now() - trigger; };
    if (img.complete) done(); else img.addEventListener('load', done, {once: true});
  });
  obs.observe(box, {subtree: true, childList: true, attributes: true});
}"""


def _number(text: str) -> float:
    m = re.search(r"-?\d+(\.\d+)?(e-?\d+)?", text)
    assert m, f"the slider's readout shows {text!r}, not a number"
    return float(m.group())


KERNEL_READY = """() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = panel && panel.sessionContext && panel.sessionContext.session
                 && panel.sessionContext.session.kernel;
  return !!(panel.context && panel.context.isReady && kernel && kernel.connectionStatus === 'connected'
            && kernel.status === 'idle');
}"""


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


def _move(page, box, action, readout, what: str, artifacts: Path, before_png: bytes) -> tuple[float, bytes]:
    """Do `action` (a slider move); return the latency until the new figure appears, and its screenshot."""
    value_before = _number(readout.inner_text())
    box.evaluate(ARM_WATCH)
    action()
    page.wait_for_function("() => window.__courseLatency !== null", timeout=120_000, polling=20)
    latency_ms = page.evaluate("() => window.__courseLatency")
    _wait_idle(page)
    value_after = _number(readout.inner_text())
    assert value_after > value_before, f"{what}: the readout went from {value_before} to {value_after}"
    after_png = box.locator("img").first.screenshot()
    (artifacts / f"after_{what}.png").write_bytes(after_png)
    changed = changed_fraction(before_png, after_png)
    assert changed > MIN_CHANGED, (f"{what}: the figure did not change ({changed:.2%} of its pixels moved, "
                                   f"need {MIN_CHANGED:.1%}); see {artifacts}")
    print(f"{what}: readout {value_before:g} -> {value_after:g}, {changed:.1%} of the pixels changed, "
          f"new figure after {latency_ms:.0f} ms")
    return latency_ms / 1000, after_png


def _wait_idle(page, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not (page.evaluate(RUN_STATE) or {}).get("idle"):
        assert time.monotonic() < deadline, f"the kernel stayed busy for {timeout_s:.0f} s after a slider move"
        time.sleep(0.2)


@pytest.mark.parametrize("case", SLIDERS, ids=lambda c: c.name)
def test_slider_in_browser(case: SliderCase):
    from playwright.sync_api import sync_playwright

    artifacts = ARTIFACTS / case.name
    artifacts.mkdir(parents=True, exist_ok=True)
    for old in artifacts.glob("*.png"):
        old.unlink()
    with jupyterlab(artifacts / "jupyterlab.log") as (base, token, _), sync_playwright() as p, chromium(p) as ctx:
        page = ctx.new_page()
        page.set_default_timeout(60_000)
        try:
            page.goto(f"{base}/lab/tree/{case.notebook}?reset&token={token}", timeout=120_000)
            page.wait_for_selector(".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle']",
                                   timeout=180_000)
            _run_all(page)
            label = page.locator(".widget-slider .widget-label", has_text=re.compile(
                rf"^\s*{re.escape(case.description)}\s*$"))
            assert label.count() > case.index, (f"no slider labelled {case.description!r} (number "
                                                f"{case.index}) in {case.notebook}")
            slider = label.nth(case.index).locator("xpath=ancestor::div[contains(@class,'widget-slider')][1]")
            box = slider.locator("xpath=ancestor::div[contains(@class,'widget-vbox')][1]")
            handle, readout = slider.locator(".noUi-handle").first, slider.locator(".widget-readout").first
            box.scroll_into_view_if_needed()
            box.locator("img").first.wait_for(state="visible", timeout=120_000)
            before = box.locator("img").first.screenshot()
            (artifacts / "before.png").write_bytes(before)

            def keys():
                handle.click()                      # a click on the handle focuses it, as a student does
                page.keyboard.press("ArrowRight")

            lat_key, after_key = _move(page, box, keys, readout, "key", artifacts, before)
            lat_page, after_page = _move(page, box, lambda: page.keyboard.press("PageUp"), readout,
                                         "pageup", artifacts, after_key)

            def drag():
                b = handle.bounding_box()
                x, y = b["x"] + b["width"] / 2, b["y"] + b["height"] / 2
                page.mouse.move(x, y)
                page.mouse.down()
                page.mouse.move(x + case.drag_px, y, steps=12)
                page.mouse.up()

            lat_drag, _ = _move(page, box, drag, readout, "drag", artifacts, after_page)
        except Exception:
            page.screenshot(path=str(artifacts / "failure_page.png"), full_page=True)
            raise
        finally:
            page.close()
    latencies = {"key": lat_key, "pageup": lat_page, "drag": lat_drag}
    (artifacts / "latency.json").write_text(json.dumps(
        {"seconds": latencies, "target_s": 1.0, "limit_s": LATENCY_LIMIT_S, "cpus": os.cpu_count()}, indent=1))
    print(f"{case.name}: slider latency (s) {latencies}; target 1 s on a CPU")
    slow = {k: v for k, v in latencies.items() if v > LATENCY_LIMIT_S}
    assert not slow, f"the figure took longer than {LATENCY_LIMIT_S} s to follow the slider: {slow}"
