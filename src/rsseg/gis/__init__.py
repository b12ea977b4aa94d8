"""Outputs a GIS user opens at once: polygons of class maps (and their areas), in GIS formats.

Layers: ``areas`` (map units -> m², pixel sizes) and ``formats`` (one writer per vector format)
below ``vectorize`` (strips -> joined regions -> polygons). Depends only on ``rsseg.errors`` and
``rsseg.io``, so ``infer`` and the CLI can both use it.
"""

from rsseg.gis.formats import VECTOR_FORMATS
from rsseg.gis.vectorize import VectorizeOptions, VectorizeResult, vectorize_map

__all__ = ["VECTOR_FORMATS", "VectorizeOptions", "VectorizeResult", "vectorize_map"]
