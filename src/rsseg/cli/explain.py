"""`rsseg explain`: last-layer activation maps of one image (seed 000 Fig. 9)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rsseg.cli import _guard, app, console


@app.command()
@_guard
def explain(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint (.ckpt) or exported model (.onnx).")],
    image: Annotated[Path, typer.Argument(help="Image to explain: GeoTIFF, JPEG or PNG, any size.")],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("activations"),
    layer: Annotated[str, typer.Option(help="logits: raw last-layer scores; probs: their softmax.")] = "logits",
    max_side: Annotated[int, typer.Option(help="Longest side of the saved maps in px (overview).")] = 1024,
    mode: Annotated[str, typer.Option(help="Window layout as in `rsseg predict`: reference, fast or naive.")] = "reference",
    tta: Annotated[bool, typer.Option("--tta", help="Average the 8 flips/rotations (D4); needs --layer probs.")] = False,
    shared_scale: Annotated[
        bool, typer.Option("--shared-scale", help="One colour range for all logit maps (default: one per class).")
    ] = False,
    cmap: Annotated[str, typer.Option(help="Matplotlib colour map of the maps, e.g. magma or viridis.")] = "magma",
    engine: Annotated[str, typer.Option(help="torch, onnx, or auto (by file suffix: .onnx -> onnx).")] = "auto",
) -> None:
    """Save the network's last-layer activation map of every class as images, an overview
    figure (activations.png) and per-class statistics (activations.json)."""
    from rsseg.explain import explain_image

    result = explain_image(checkpoint, image, out, layer=layer, max_side=max_side, mode=mode, tta=tta,
                           shared_scale=shared_scale, cmap=cmap, engine=engine)
    width = max(len(s["name"]) for s in result.stats) + len(" (ignored)")
    for s in result.stats:
        name = s["name"] + (" (ignored)" if s["ignored"] else "")
        rng = "no valid pixels" if s["min"] is None else f"min {s['min']:.3g}  max {s['max']:.3g}  mean {s['mean']:.3g}"
        console.print(f"{name:<{width}}  {rng}  ->  {s['file']}", highlight=False)
    console.print(f"overview: {result.paths['overview']}\nstatistics: {result.paths['json']}")
