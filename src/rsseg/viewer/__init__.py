"""``rsseg view``: a local web map of a prediction folder (image, class map, confidence).

Layers: ``scenes`` (what a prediction folder holds) and ``tiles`` (PNG tiles cut on demand
from the rasters, through their overviews) below ``server`` (HTTP on 127.0.0.1 only, files
confined to the folder). The page and its script are in ``static/``: nothing is fetched from
the internet.
"""

from rsseg.viewer.server import serve, start_server

__all__ = ["serve", "start_server"]
