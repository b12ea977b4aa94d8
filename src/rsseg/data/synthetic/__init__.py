"""Deterministic synthetic land-cover scenes: the built-in demo data and the test data.

``render`` draws scenes (image + class mask) from a seed; ``files`` writes them as
georeferenced GeoTIFFs in the folder layout that ``data.dataset: folder`` reads.
"""

from rsseg.data.synthetic.files import (
    DEFAULT_CRS,
    DEFAULT_ORIGIN,
    DEFAULT_SPLITS,
    generate_dataset,
    generate_large_scene,
    write_scene,
)
from rsseg.data.synthetic.render import SYNTHETIC_CLASSES, generate_scene

__all__ = [
    "DEFAULT_CRS",
    "DEFAULT_ORIGIN",
    "DEFAULT_SPLITS",
    "SYNTHETIC_CLASSES",
    "generate_dataset",
    "generate_large_scene",
    "generate_scene",
    "write_scene",
]
