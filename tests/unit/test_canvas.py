"""Canvas tiles made from grey text (the captions' cheap path)."""

from __future__ import annotations

import numpy as np
import pytest

from tessera.mixer.canvas import Tile, rgb_to_yuv


def test_a_grey_tile_is_opaque_with_the_colours_of_grey_levels() -> None:
    grey = np.zeros((4, 6), np.uint8)
    grey[:2] = 255
    tile = Tile.from_grey(grey)
    assert tile.opaque is not None and (tile.width, tile.height) == (6, 4)
    y, u, v = tile.opaque
    assert (y[:2] == rgb_to_yuv((255, 255, 255))[0]).all()
    assert (y[2:] == rgb_to_yuv((0, 0, 0))[0]).all()
    assert (u == 128).all() and (v == 128).all()
    # The same as the general path would make of it.
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., :3] = grey[..., None]
    rgba[..., 3] = 255
    general = Tile.from_rgba(rgba)
    assert general.opaque is not None
    for mine, theirs in zip(tile.opaque, general.opaque, strict=True):
        assert (np.abs(mine.astype(int) - theirs.astype(int)) <= 1).all()
    with pytest.raises(ValueError):
        Tile.from_grey(np.zeros((3, 6), np.uint8))
