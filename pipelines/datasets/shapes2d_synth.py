"""Procedural dSprites-like images: ``shapes2d-synth`` (the dSprites grid) and ``shapes2d-synth-small``.

Binary 64x64 images (stored 0/255) of a square, an ellipse or a heart, with
the factor grid of dSprites: shape (3), scale (6, 0.5..1), orientation (40,
0..2pi, both ends included as in dSprites, so the first and last class look
alike), pos_x (32, 0..1), pos_y (32, 0..1) - 737,280 images. The small set
keeps shape and scale and uses 10 orientations and 16 x 16 positions
(46,080 images). No download needed: a stand-in for dSprites in demos, tests
and benchmarks.

Rendering is vectorised: each (shape, scale, orientation) sprite is drawn
once on a 32x32 canvas (4x4 supersampling, a pixel is on when at least half
covered) and then cut out at every position from a sliding-window view, so
pos_x moves the sprite right by up to 31 pixels and pos_y moves it down.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Iterator

import numpy as np

from pipelines.base import Converted, DatasetSpec

FACTOR_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")
SIZES = {"shapes2d-synth": (3, 6, 40, 32, 32), "shapes2d-synth-small": (3, 6, 10, 16, 16)}
SHAPES = ("square", "ellipse", "heart")
IMAGE = 64
SPRITE = 32  # canvas of one sprite
MAX_SHIFT = 31  # positions move the sprite's top-left corner over 0..MAX_SHIFT pixels (1-pixel steps for 32)
UNIT = 10.0  # pixels per shape unit at scale 1
SUPERSAMPLE = 4


def factor_values(sizes: tuple[int, ...]) -> list[list[float]]:
    """dSprites' physical values: shape 1..3, scale 0.5..1, orientation 0..2pi, positions 0..1."""
    n_shape, n_scale, n_orient, n_x, n_y = sizes
    return [
        [float(s + 1) for s in range(n_shape)],
        np.linspace(0.5, 1.0, n_scale).tolist(),
        np.linspace(0.0, 2 * np.pi, n_orient).tolist(),
        np.linspace(0.0, 1.0, n_x).tolist(),
        np.linspace(0.0, 1.0, n_y).tolist(),
    ]


def _inside(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Membership in the unit shape (x right, y up)."""
    if shape == "square":
        return np.maximum(np.abs(x), np.abs(y)) <= 1.0
    if shape == "ellipse":
        return (x / 1.25) ** 2 + (y / 0.6) ** 2 <= 1.0
    x, y = x / 0.9, y / 0.9 + 0.12  # heart curve scaled to fit and centred on the origin
    return (x * x + y * y - 1.0) ** 3 - x * x * y ** 3 <= 0.0


def render_sprite(shape: str, scale: float, angle: float) -> np.ndarray:
    """One binary sprite, uint8 (SPRITE, SPRITE) with values 0/255, centred on the canvas."""
    side = SPRITE * SUPERSAMPLE
    c = (np.arange(side) + 0.5) / SUPERSAMPLE - SPRITE / 2  # sample positions in pixels from the centre
    col, row = np.meshgrid(c, c)
    x, y = col / (UNIT * scale), -row / (UNIT * scale)  # image rows grow downwards
    cos, sin = np.cos(angle), np.sin(angle)
    inside = _inside(shape, cos * x + sin * y, -sin * x + cos * y)  # rotate the shape by +angle
    cover = inside.reshape(SPRITE, SUPERSAMPLE, SPRITE, SUPERSAMPLE).mean(axis=(1, 3))
    return np.where(cover >= 0.5, 255, 0).astype(np.uint8)


def place_everywhere(sprite: np.ndarray, n_x: int, n_y: int) -> np.ndarray:
    """``sprite`` at every (pos_x, pos_y) in grid order: uint8 (n_x * n_y, 1, IMAGE, IMAGE)."""
    span = MAX_SHIFT  # the canvas has room for every shift on its top-left side
    canvas = np.zeros((IMAGE + span, IMAGE + span), np.uint8)
    canvas[span:span + SPRITE, span:span + SPRITE] = sprite
    windows = np.lib.stride_tricks.sliding_window_view(canvas, (IMAGE, IMAGE))  # [a, b] = canvas[a:, b:]
    x_off = np.rint(np.linspace(0, MAX_SHIFT, n_x)).astype(int)
    y_off = np.rint(np.linspace(0, MAX_SHIFT, n_y)).astype(int)
    # windows[a, b] starts at row a, column b: the sprite lands at row y_off, column x_off
    images = windows[(span - y_off)[None, :], (span - x_off)[:, None]]  # (n_x, n_y, IMAGE, IMAGE)
    return images.reshape(n_x * n_y, 1, IMAGE, IMAGE)


def blocks(sizes: tuple[int, ...]) -> Iterator[np.ndarray]:
    """All images in grid order, one block per (shape, scale, orientation)."""
    _, scales, angles, _, _ = factor_values(sizes)
    for shape in SHAPES[: sizes[0]]:
        for scale in scales:
            for angle in angles:
                yield place_everywhere(render_sprite(shape, scale, angle), sizes[3], sizes[4])


def convert(raw_dir: Path, sizes: tuple[int, ...]) -> Converted:
    """Render the grid ``sizes``; ``raw_dir`` is unused (procedural)."""
    return Converted(
        factor_names=list(FACTOR_NAMES),
        factor_sizes=list(sizes),
        factor_values=factor_values(sizes),
        array_name="images",
        row_shape=(1, IMAGE, IMAGE),
        dtype="uint8",
        blocks=blocks(sizes),
        pipeline={"renderer": "procedural dSprites-like", "supersample": SUPERSAMPLE,
                  "sprite_canvas": SPRITE, "pixels_per_unit": UNIT, "shapes": list(SHAPES)},
    )


SPECS = {
    name: DatasetSpec(
        name=name,
        description=f"procedural dSprites-like binary 64x64 images, grid {'x'.join(map(str, sizes))}",
        factor_names=FACTOR_NAMES,
        factor_sizes=sizes,
        raw_files=(),
        convert=partial(convert, sizes=sizes),
    )
    for name, sizes in SIZES.items()
}
