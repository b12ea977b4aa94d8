"""The dataset registry: ``DATASETS`` maps ``data.dataset`` to a source class.

One small module per dataset family knows its on-disk layout (as the official download
unpacks), class table, mask encoding and official split; ``base.Source`` does the rest.
"""

from __future__ import annotations

from rsseg.config import DataConfig
from rsseg.data.datasets.base import Scene, Source
from rsseg.data.datasets.deepglobe import DeepGlobeSource
from rsseg.data.datasets.dubai import DubaiSource
from rsseg.data.datasets.flair import FLAIR1Source
from rsseg.data.datasets.folder import (
    FolderSource,
    MultispectralSource,
    SyntheticSource,
)
from rsseg.data.datasets.gid import GID15Source
from rsseg.data.datasets.isprs import PotsdamSource, VaihingenSource
from rsseg.data.datasets.landcoverai import LandCoverAISource
from rsseg.data.datasets.loveda import LoveDASource
from rsseg.data.datasets.tables import with_ignored
from rsseg.data.datasets.vector import VectorSource
from rsseg.data.splits import SPLITS
from rsseg.errors import RsSegError

DATASETS: dict[str, type[Source]] = {
    cls.name: cls
    for cls in (
        SyntheticSource, FolderSource, MultispectralSource, GID15Source, LandCoverAISource,
        DeepGlobeSource, LoveDASource, FLAIR1Source, PotsdamSource, VaihingenSource, DubaiSource,
        VectorSource,
    )
}


def get_source(cfg: DataConfig) -> Source:
    try:
        return DATASETS[cfg.dataset](cfg)
    except KeyError:
        raise RsSegError(
            f"unknown dataset '{cfg.dataset}'; available: {', '.join(sorted(DATASETS))}"
        ) from None


__all__ = ["DATASETS", "SPLITS", "Scene", "Source", "get_source", "with_ignored"]
