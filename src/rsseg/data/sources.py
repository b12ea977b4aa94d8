"""Compatibility name for the dataset registry, which lives in ``rsseg.data.datasets``."""

from rsseg.data.datasets import (
    DATASETS,
    SPLITS,
    Scene,
    Source,
    get_source,
    with_ignored,
)
from rsseg.data.datasets.folder import FolderSource, SyntheticSource

__all__ = ["DATASETS", "SPLITS", "FolderSource", "Scene", "Source", "SyntheticSource", "get_source", "with_ignored"]
