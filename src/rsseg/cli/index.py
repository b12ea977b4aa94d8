"""`rsseg index ...`: retrieval of similar places (seed 000 §5.2): build, search, compare."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from rsseg.cli import _guard, app, console, err_console

index_app = typer.Typer(
    help="Retrieval of similar places (seed 000 §5.2): build, search, compare.", no_args_is_help=True
)
app.add_typer(index_app, name="index")


@index_app.command("build")
@_guard
def index_build(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint (.ckpt) that predicts the masks.")],
    scenes: Annotated[list[Path], typer.Argument(help="Scenes to index: GeoTIFF, JPEG or PNG.")],
    out: Annotated[Path, typer.Option(help="Index folder (an existing index there is replaced).")] = Path("index"),
    tile: Annotated[int, typer.Option(help="Chip size in pixels.")] = 224,
    stride: Annotated[int | None, typer.Option(help="Step of the chip grid (default: the tile size).")] = None,
    embed: Annotated[
        list[str] | None,
        typer.Option("--embed", help="Embedding to store (repeatable): backbone, or encoder=SOURCE with SOURCE "
                                     "a built-in weights source (geoembed-aerial-resnet18, ...) or an encoder "
                                     "file exported by rsseg pretrain; stored as encoder-<name>."),
    ] = None,
    vit: Annotated[
        list[str] | None,
        typer.Option("--vit", help="ViT embedding ARCH=WEIGHTS; ARCH: dino-vits16, dino-vits8, dino-vitb16, "
                                   "dino-vitb8 or a timm name (repeatable)."),
    ] = None,
    vit_pool: Annotated[str, typer.Option(help="ViT embedding: cls token or mean of patch tokens.")] = "cls",
    mask: Annotated[
        list[Path] | None,
        typer.Option("--mask", help="Ground-truth mask of each scene, in order, instead of predictions."),
    ] = None,
    class_order: Annotated[
        str | None, typer.Option(help="EMD order of the evaluated classes, comma-separated (default: table).")
    ] = None,
    min_mass: Annotated[float, typer.Option(help="Least share of a chip's pixels in evaluated classes.")] = 0.5,
    workers: Annotated[int, typer.Option(help="Index scenes on a local Dask cluster of N processes.")] = 0,
) -> None:
    """Predict scenes, cut chips and store their signatures (and embeddings) in an index."""
    from rsseg.retrieval import ViTSpec, build_index

    embeddings = [*(embed or []), *(ViTSpec.parse(v, vit_pool) for v in vit or [])]
    order = [c.strip() for c in class_order.split(",")] if class_order else None
    index = build_index(checkpoint, scenes, tile=tile, out=out, embeddings=embeddings, stride=stride,
                        masks=mask, class_order=order, min_mass=min_mass, workers=workers)
    names = ", ".join(index.embedding_names) or "none"
    console.print(f"index: {index.path} ({index.count} tiles; embeddings: {names})")


@index_app.command("search")
@_guard
def index_search(
    index: Annotated[Path, typer.Argument(help="Index folder.")],
    query: Annotated[str, typer.Option(help="An image file or a tile id of the index.")],
    k: Annotated[int, typer.Option(help="Number of results.")] = 10,
    by: Annotated[
        str, typer.Option(help="emd, spatial (= miou), wiou, pixel-precision, backbone, vit, encoder, "
                               "or an embedding NAME[:l1|l2] (e.g. encoder-geoembed-aerial-resnet18).")
    ] = "emd",
    out: Annotated[Path, typer.Option(help="Folder for the JSON list and the gallery PNG.")] = Path("retrieval"),
    checkpoint: Annotated[
        Path | None, typer.Option(help="Checkpoint for image queries (default: the index's).")
    ] = None,
    ground: Annotated[
        Path | None, typer.Option(help="EMD ground-distance matrix (.npy, .json, .csv), solved with POT.")
    ] = None,
) -> None:
    """Rank the index against a query; print the ranked JSON list, save it and a gallery PNG."""
    from rsseg.retrieval import Searcher, search_index
    from rsseg.retrieval.query import load_ground, output_paths, resolve_method

    searcher = Searcher(index, checkpoint)
    matrix = load_ground(ground, searcher.index.space.dim) if ground else None
    results = search_index(searcher.index, query, k=k, by=by, out=out, ground=matrix, searcher=searcher)
    typer.echo(json.dumps(results, indent=2))
    paths = output_paths(out, searcher.label(query), resolve_method(searcher.index, by).name)
    err_console.print(f"results: {paths[0]}\ngallery: {paths[1]}", highlight=False)


@index_app.command("compare")
@_guard
def index_compare(
    index: Annotated[Path, typer.Argument(help="Index folder.")],
    queries: Annotated[
        list[str] | None, typer.Option("--queries", help="Query tile ids or images, comma-separated or repeated.")
    ] = None,
    sample: Annotated[int, typer.Option(help="Without --queries: this many index tiles drawn at random.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the random draw.")] = 0,
    checkpoint: Annotated[Path | None, typer.Option(help="Checkpoint for image queries.")] = None,
) -> None:
    """Top-N and Top-N@M of every method with respect to EMD (seed 000 Table 3)."""
    from rsseg.retrieval import compare_methods, format_comparison

    items = [q.strip() for v in queries or [] for q in v.split(",") if q.strip()]
    table = compare_methods(index, items or sample, checkpoint=checkpoint, seed=seed)
    title = f"agreement with EMD over {len(items) or sample} queries"
    console.print(format_comparison(table, title=title), highlight=False, markup=False)
