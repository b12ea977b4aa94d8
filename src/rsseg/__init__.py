"""rsseg: a virtual lab for semantic segmentation of satellite and aerial imagery."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rsseg")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

from rsseg.errors import RsSegError  # noqa: E402

__all__ = ["RsSegError", "__version__"]
