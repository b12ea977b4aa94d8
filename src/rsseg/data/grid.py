"""Chip origins along one side: shared by the scan (index), the tiles, EBB and SSL tiling."""

from __future__ import annotations


def grid_positions(length: int, tile: int) -> list[int]:
    """Chip origins covering ``[0, length)`` with ``ceil(length / tile)`` evenly spread chips.

    Unlike a plain non-overlapping grid this never drops the remainder of a scene whose side
    is not a multiple of the chip size; chips overlap by less than one chip in total.
    """
    if length <= tile:
        return [0]
    n = -(-length // tile)
    return [round(k * (length - tile) / (n - 1)) for k in range(n)]
