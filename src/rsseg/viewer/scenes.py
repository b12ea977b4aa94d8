"""What a prediction folder holds: one ``Scene`` per ``NAME_classes.tif`` and its siblings.

Memory contract: headers and class tables only; rasters are opened per request.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import rasterio
from rasterio.errors import NotGeoreferencedWarning

from rsseg.errors import RsSegError

TILE = 256


@dataclass
class Scene:
    name: str
    classes: Path
    width: int
    height: int
    names: list[str]
    colors: list[tuple[int, int, int]]
    layers: dict[str, Path] = field(default_factory=dict)  # image, classes, confidence, probabilities
    areas: Path | None = None

    @property
    def max_zoom(self) -> int:
        """Zoom levels 0..max_zoom; at ``max_zoom`` one screen pixel is one map pixel."""
        return max(0, math.ceil(math.log2(max(self.width, self.height) / TILE)))

    def describe(self) -> dict:
        return {"name": self.name, "width": self.width, "height": self.height, "max_zoom": self.max_zoom,
                "tile": TILE, "layers": [k for k in ("image", "classes", "confidence") if k in self.layers],
                "probabilities": "probabilities" in self.layers,
                "classes": [{"index": i, "name": n, "color": "#{:02x}{:02x}{:02x}".format(*c)}
                            for i, (n, c) in enumerate(zip(self.names, self.colors))],
                "areas": json.loads(self.areas.read_text()) if self.areas else None}


def _image_of(folder: Path, name: str, images: list[Path], only: bool) -> Path | None:
    """The scene's input image: the given image of the same name (or the only one, for a folder
    of one scene), else the one its STAC Item names, if it exists."""
    for image in images:
        if Path(image).stem == name or (only and len(images) == 1):
            return Path(image)
    item = folder / f"{name}_item.json"
    if item.exists():
        try:
            src = json.loads(item.read_text()).get("properties", {}).get("rsseg:input")
        except (OSError, json.JSONDecodeError):
            src = None
        if src and Path(src).is_file():
            return Path(src)
    return None


def find_scenes(folder: Path, images: list[Path] = ()) -> dict[str, Scene]:
    folder = Path(folder)
    for image in images:
        if not Path(image).is_file():
            raise RsSegError(f"image not found: {image}")
    if not folder.is_dir():
        raise RsSegError(f"prediction folder not found: {folder}")
    scenes = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        maps = sorted(folder.glob("*_classes.tif"))
        for path in maps:
            name = path.name.removesuffix("_classes.tif")
            with rasterio.open(path) as src:
                try:
                    names = json.loads(src.tags().get("classes", "null")) or []
                except json.JSONDecodeError:
                    names = []
                try:
                    cmap = src.colormap(1)
                except ValueError:
                    cmap = {}
                # GDAL pads colour tables to 256 entries: without names, count the non-empty ones
                count = len(names) or max((k for k, c in cmap.items() if k < 255 and any(c)), default=-1) + 1
                names = [names[i] if i < len(names) else f"class {i}" for i in range(count)]
                colors = [tuple(cmap.get(i, (128, 128, 128))[:3]) for i in range(count)]
                scene = Scene(name, path, src.width, src.height, names, colors)
            scene.layers["classes"] = path
            for layer in ("confidence", "probabilities"):
                if (folder / f"{name}_{layer}.tif").exists():
                    scene.layers[layer] = folder / f"{name}_{layer}.tif"
            picture = _image_of(folder, name, list(images), len(maps) == 1)
            if picture is not None:
                scene.layers["image"] = picture
            areas = folder / f"{name}_areas.json"
            scene.areas = areas if areas.exists() else None
            scenes[name] = scene
    if not scenes:
        raise RsSegError(f"{folder} holds no class maps (*_classes.tif): predict into it first")
    return scenes
