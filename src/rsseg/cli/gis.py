"""`rsseg vectorize`: GIS outputs of an existing class map."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rsseg.cli import _guard, app, console, err_console


@app.command()
@_guard
def vectorize(
    class_map: Annotated[Path, typer.Argument(help="Class GeoTIFF (e.g. NAME_classes.tif from rsseg predict).")],
    out: Annotated[Path | None, typer.Option(help="Vector file to write (default: beside the map).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="gpkg (GeoPackage), parquet (GeoParquet) or geojson.")] = "gpkg",
    simplify: Annotated[
        float | None, typer.Option(help="Simplify edges by this tolerance in map units, keeping shared edges shared.")
    ] = None,
    min_area: Annotated[
        float | None, typer.Option(help="Merge regions smaller than this (m²) into their largest neighbour.")
    ] = None,
    confidence: Annotated[
        Path | None, typer.Option(help="Confidence raster (uint8, 254 = 1); default: NAME_confidence.tif or "
                                       "NAME_probabilities.tif beside the map.")
    ] = None,
    strip_rows: Annotated[int, typer.Option(help="Rows read at a time (memory vs. speed).")] = 1024,
) -> None:
    """Polygons of a class map: class id and name, area in m², pixels, mean confidence; no gaps, no overlaps."""
    from rsseg.gis import VectorizeOptions, vectorize_map

    options = VectorizeOptions(format=fmt, simplify=simplify, min_area=min_area, strip_rows=strip_rows,
                               confidence=confidence)
    result = vectorize_map(class_map, out, options=options)
    for note in result.warnings:
        err_console.print(f"[yellow]warning:[/] {note}", highlight=False)
    console.print(f"polygons: {result.path} ({result.polygons} polygons, {result.strips} strip(s), "
                  f"areas in {result.units}, confidence: {result.confidence or 'none'})")


@app.command()
@_guard
def view(
    folder: Annotated[Path, typer.Argument(help="Prediction folder (rsseg predict --out).")],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: any free port).")] = 8765,
    image: Annotated[
        list[Path] | None, typer.Option(help="Input image(s) to show under the maps (matched by name); "
                                             "default: the one each scene's STAC Item names.")
    ] = None,
) -> None:
    """A local web map of a prediction folder: image, class map and confidence layers, legend,
    pixel probabilities on click, class areas. Bound to 127.0.0.1; nothing fetched from the internet."""
    from rsseg.viewer import serve

    def ready(server) -> None:
        console.print(f"rsseg view: {server.url}  ({len(server.scenes)} scene(s); Ctrl-C stops)")

    try:
        serve(folder, port, image or [], on_ready=ready)
    except KeyboardInterrupt:
        console.print("stopped")
