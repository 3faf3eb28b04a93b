"""Pictures: the one image-grid function, a plotting helper, and sliders that redraw fast (blitting)."""
from __future__ import annotations

import numpy as np
import torch


def image_grid(x, nrow: int | None = None, pad: int = 1) -> np.ndarray:
    """Tile images into one array for imshow.

    x: (B, C, H, W) tensor or array in [-1, 1], C = 1 or 3.  nrow: images per row
    (default ~sqrt(B)).  Returns (rows*(H+pad)-pad, nrow*(W+pad)-pad) for C = 1 or (..., 3) for
    C = 3, in [0, 1], padding white.
    """
    x = torch.as_tensor(x).detach().float().cpu()
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"image_grid expects (B, C, H, W) with C = 1 or 3, got {tuple(x.shape)}")
    B, C, H, W = x.shape
    nrow = nrow or max(1, int(np.ceil(np.sqrt(B))))
    rows = int(np.ceil(B / nrow))
    grid = torch.ones(C, rows * (H + pad) - pad, nrow * (W + pad) - pad)
    img = ((x.clamp(-1, 1) + 1) / 2)
    for i in range(B):
        r, c = divmod(i, nrow)
        grid[:, r * (H + pad): r * (H + pad) + H, c * (W + pad): c * (W + pad) + W] = img[i]
    grid = grid.permute(1, 2, 0).numpy()
    return grid[..., 0] if C == 1 else grid


def show_images(x, nrow: int | None = None, title: str | None = None, ax=None):
    """Draw image_grid(x) on a matplotlib axis (a new figure if none); returns the axis."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    grid = image_grid(x, nrow)
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


class BlitFigure:
    """A figure that a slider redraws fast: each frame draws only the artists that move.

    fig: a matplotlib.figure.Figure made with `Figure(...)`, not pyplot (nothing else shows it).
    moving: the artists that change from frame to frame (images, markers, lines, texts). The figure
    is drawn once without them and that picture is saved; `png()` puts the saved picture back, draws
    the moving artists over it (matplotlib's "blitting") and returns the frame as PNG bytes. Change
    the moving artists (set_data, set_text, ...) before each call. A frame then costs what the
    moving artists cost, not what the whole figure costs, which keeps a slider within a second
    (docs/design.md, sec. 4). The moving artists are drawn on top of everything else.
    """

    def __init__(self, fig, moving):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        self.fig, self.moving = fig, list(moving)
        self.canvas = FigureCanvasAgg(fig)
        for artist in self.moving:
            artist.set_animated(True)            # animated artists are left out of canvas.draw()
        self.canvas.draw()
        self._background = self.canvas.copy_from_bbox(fig.bbox)

    def png(self) -> bytes:
        """The current frame: the saved picture with the moving artists drawn over it, as PNG bytes."""
        import io

        import matplotlib.pyplot as plt

        self.canvas.restore_region(self._background)
        for artist in self.moving:
            self.fig.draw_artist(artist)
        buf = io.BytesIO()
        plt.imsave(buf, np.asarray(self.canvas.buffer_rgba()), format="png",
                   pil_kwargs={"compress_level": 1})     # the fastest zlib level: noise hardly compresses
        return buf.getvalue()


def blit_slider(slider, fig, moving, update):
    """A slider with its picture below it, redrawn by blitting (BlitFigure); returns the box to display().

    slider: an ipywidgets slider; its description is the label a student (and tests/test_browser.py)
    finds it by. update(value) moves the `moving` artists of `fig` to the slider's value. Put a
    static figure of the same thing next to it: an exported page shows no live widget.
    """
    import ipywidgets as widgets
    from IPython.display import Image, display

    frames = BlitFigure(fig, moving)

    def show(value):
        update(value)
        display(Image(frames.png()))
    return widgets.VBox([slider, widgets.interactive_output(show, {"value": slider})])


def image_browser(images: dict, controls: dict, nrow: int | None = None, title=None, figsize=(9, 1.6)):
    """A widget that switches between precomputed pictures: images[key] is shown, key = the tuple of
    the controls' values in the order of `controls` (name -> ipywidget), or the single value for one
    control. Precompute everything a control can reach, so that moving it only switches pictures
    (docs/design.md, sec. 4). title(*values) -> str, optional. Returns the widget box to display,
    next to a static figure of the same pictures (the HTML export shows no live widgets).
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    names = list(controls)

    def draw(**values):
        key = tuple(values[n] for n in names)
        fig, ax = plt.subplots(figsize=figsize)
        show_images(images[key if len(key) > 1 else key[0]], nrow=nrow, ax=ax,
                    title=title(*key) if title else None)
        plt.show()

    return widgets.VBox([widgets.HBox(list(controls.values())), widgets.interactive_output(draw, controls)])
