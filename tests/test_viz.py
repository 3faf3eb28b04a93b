"""diffusion_lib.course.viz: the image grid and the blitted slider figure (BlitFigure, blit_slider).

Deterministic (no randomness in any verdict): designed false-failure rate 0.
"""
import io

import ipywidgets as widgets
import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from diffusion_lib.course.viz import BlitFigure, blit_slider, image_grid

matplotlib.use("Agg")


def test_image_grid_tiles_and_maps_to_unit_range():
    x = torch.stack([torch.full((1, 2, 2), v) for v in (-1.0, 0.0, 1.0, 3.0)])     # 3.0 is clamped
    grid = image_grid(x, nrow=2, pad=1)
    assert grid.shape == (5, 5)
    assert grid[0, 0] == 0.0 and grid[0, 3] == 0.5 and grid[3, 0] == 1.0 and grid[3, 3] == 1.0
    assert grid[2, :].min() == 1.0                                                  # white padding
    with pytest.raises(ValueError, match="C = 1 or 3"):
        image_grid(torch.zeros(2, 2, 4, 4))


def _figure(animated_marker_at=None):
    """A static curve and a marker on top; returns (fig, marker)."""
    fig = Figure(figsize=(3, 2), dpi=50)
    ax = fig.add_subplot()
    ax.plot(np.linspace(0, 1, 50), np.linspace(0, 1, 50) ** 2, "C0")
    marker, = ax.plot([], [], "C1o", zorder=10)
    if animated_marker_at is not None:
        marker.set_data([animated_marker_at], [animated_marker_at ** 2])
    ax.set(xlim=(0, 1), ylim=(0, 1))
    return fig, marker


def _pixels(png: bytes) -> np.ndarray:
    import matplotlib.pyplot as plt
    return plt.imread(io.BytesIO(png), format="png")


def test_a_blitted_frame_equals_the_whole_figure_drawn_anew():
    fig, marker = _figure()
    frames = BlitFigure(fig, [marker])
    for u in (0.2, 0.7):
        marker.set_data([u], [u ** 2])
        blitted = _pixels(frames.png())
        whole_fig, _ = _figure(animated_marker_at=u)
        buf = io.BytesIO()
        whole_fig.savefig(buf, format="png")
        assert np.array_equal(blitted, _pixels(buf.getvalue())), f"frame at {u} differs from a full drawing"


def test_a_frame_draws_only_the_moving_artists():
    fig, marker = _figure()
    frames = BlitFigure(fig, [marker])
    first = _pixels(frames.png())
    frames.canvas.draw = lambda *a, **k: pytest.fail("png() drew the whole figure again")
    marker.set_data([0.5], [0.25])
    second = _pixels(frames.png())
    assert not np.array_equal(first, second)            # the marker appeared


def test_blit_slider_updates_on_every_move():
    fig, marker = _figure()
    seen = []

    def update(value):
        seen.append(value)
        marker.set_data([value], [value ** 2])
    slider = widgets.FloatSlider(value=0.1, min=0, max=1, step=0.1, description="u")
    box = blit_slider(slider, fig, [marker], update)
    assert isinstance(box, widgets.VBox) and box.children[0] is slider
    slider.value = 0.6
    assert seen[-1] == 0.6
