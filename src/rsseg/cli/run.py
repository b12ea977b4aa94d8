"""Run commands: train, evaluate, predict, demo, experiment, report, compare."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rsseg.cli import SetOption, _guard, app, console
from rsseg.errors import RsSegError


@app.command()
@_guard
def train(
    config: Annotated[Path, typer.Argument(help="YAML config file.")],
    overrides: SetOption = None,
    resume: Annotated[
        Path | None, typer.Option(help="Run directory to continue from its last checkpoint.")
    ] = None,
) -> None:
    """Train a model; writes a run directory with checkpoints, logs and the resolved config."""
    from rsseg.config import load_config
    from rsseg.training.train import train as run_train

    cfg = load_config(config, overrides or [])
    result = run_train(cfg, config_name=config.stem, resume=resume)
    if result.global_rank:  # other DDP ranks: rank 0 reports
        return
    console.print(f"run directory: {result.run_dir}")
    console.print(f"model checkpoint: {result.model_checkpoint} (train.select: {cfg.train.select})", soft_wrap=True)
    score = ("nothing was validated: the last weights" if result.best_val_miou is None
             else f"val mIoU {result.best_val_miou:.4f}")
    console.print(f"best checkpoint: {result.best_checkpoint} ({score})", soft_wrap=True)


@app.command()
@_guard
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint (.ckpt) to evaluate.")],
    config: Annotated[
        Path | None, typer.Option(help="Config whose data section to use (default: the checkpoint's).")
    ] = None,
    split: Annotated[str, typer.Option(help="Split to evaluate: train, val or test.")] = "test",
    out: Annotated[Path | None, typer.Option(help="Output folder (default: RUN/eval-SPLIT).")] = None,
    mode: Annotated[
        str | None, typer.Option(help="As `rsseg predict --mode` (default: the checkpoint's infer.mode).")
    ] = None,
    tta: Annotated[
        bool | None, typer.Option("--tta", help="Average the 8 flips/rotations (D4); 8x slower (default: infer.tta).")
    ] = None,
    overrides: SetOption = None,
) -> None:
    """Evaluate a checkpoint on whole scenes, predicted as `rsseg predict` would: metrics.json
    and a confusion-matrix PNG.

    --set overrides the --config file, or else the checkpoint's own config (never the defaults):
    --set data.root=OTHER evaluates on another folder of the same layout."""
    from rsseg.trained.checkpoint import checkpoint_config
    from rsseg.evaluate import evaluate as run_evaluate
    from rsseg.metrics import format_metrics_table

    cfg = checkpoint_config(checkpoint, overrides or [], config) if config or overrides else None
    result = run_evaluate(checkpoint, config=cfg, split=split, out=out, mode=mode, tta=tta)
    source = "--mode" if mode is not None else "the checkpoint's infer.mode"
    console.print(f"mode: {result.mode} (from {source}){', with TTA' if result.tta else ''}")
    console.print(format_metrics_table(result.metrics, title=f"{split} split"))
    console.print(f"metrics: {result.metrics_path}\nconfusion matrix: {result.confusion_png}")


@app.command()
@_guard
def calibrate(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint (.ckpt) to calibrate.")],
    split: Annotated[str, typer.Option(help="Split to fit the temperature on.")] = "val",
    out: Annotated[Path | None, typer.Option(help="Checkpoint to write (default: <stem>-calibrated.ckpt).")] = None,
    in_place: Annotated[bool, typer.Option("--in-place", help="Replace CHECKPOINT (atomically).")] = False,
) -> None:
    """Fit a softmax temperature on a split (probabilities only; class maps unchanged)."""
    from rsseg.calibration import calibrate as run_calibrate

    if in_place and out is not None:
        raise RsSegError("--in-place and --out exclude each other")
    r = run_calibrate(checkpoint, split=split, out=out, in_place=in_place)
    console.print(f"temperature {r.temperature:.4f} on {r.pixels} {split} pixels: "
                  f"ECE {r.ece_before:.4f} -> {r.ece_after:.4f}")
    console.print(f"calibrated checkpoint: {r.checkpoint}")


@app.command()
@_guard
def predict(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint (.ckpt) or exported model (.onnx).")],
    inputs: Annotated[list[Path], typer.Argument(help="Images to map: GeoTIFF, JPEG or PNG, any size.")],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("predictions"),
    mode: Annotated[
        str | None,
        typer.Option(help="reference: seed Border Correction; fast: large tiles, same margin; whole: one "
                     "forward pass (<= 16 Mpix); naive. Default: the checkpoint's infer.mode."),
    ] = None,
    window: Annotated[int | None, typer.Option(help="Window size (default: checkpoint's).")] = None,
    keep: Annotated[int | None, typer.Option(help="Kept centre size (default: checkpoint's).")] = None,
    fast_tile: Annotated[int | None, typer.Option(help="fast: largest kept tile side in px (1024).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Windows per pass at the reference window.")] = None,
    blend: Annotated[str | None, typer.Option(help="Cross-fade windows at the seams: linear or cosine.")] = None,
    tta: Annotated[bool | None, typer.Option("--tta", help="Average the 8 flips/rotations (D4); 8x slower.")] = None,
    probabilities: Annotated[
        bool | None, typer.Option("--probabilities", help="Also write <name>_probabilities.tif (uint8, 254 = 1).")
    ] = None,
    skip_existing: Annotated[bool | None, typer.Option("--skip-existing", help="Skip scenes whose outputs exist.")] = None,
    workers: Annotated[int, typer.Option(help="Run scenes on a local Dask cluster of N processes.")] = 0,
    scheduler: Annotated[
        str | None, typer.Option(help="Run scenes on an existing Dask cluster, e.g. tcp://head:8786.")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="Torch threads per process; equal values give byte-identical outputs.")
    ] = None,
    engine: Annotated[str, typer.Option(help="torch, onnx, or auto (by file suffix: .onnx -> onnx).")] = "auto",
    low_memory: Annotated[
        bool | None, typer.Option("--low-memory", help="Small forward passes (<= 4 x 256² px): least peak memory.")
    ] = None,
    overviews: Annotated[
        bool | None, typer.Option("--overviews", help="Internal overviews in the GeoTIFFs (class map: mode), for GIS.")
    ] = None,
    precision: Annotated[
        str | None, typer.Option(help="32 (checkpoint default: same map on any machine), bf16 (faster), auto.")
    ] = None,
    confidence: Annotated[
        str | None, typer.Option(help="Also write <name>_confidence.tif: max, margin or entropy (254 = sure).")
    ] = None,
    disagreement: Annotated[
        bool | None, typer.Option("--disagreement", help="With --tta: <name>_disagreement.tif, share of D4 views differing.")
    ] = None,
    cog: Annotated[bool | None, typer.Option("--cog/--no-cog", help="Cloud-Optimized GeoTIFF rasters (on).")] = None,
    vector: Annotated[
        str | None, typer.Option(help="Also write <name>_polygons: gpkg (GeoPackage), parquet or geojson.")
    ] = None,
    simplify: Annotated[
        float | None, typer.Option(help="With --vector: simplify edges (map units), shared edges kept shared.")
    ] = None,
    min_area: Annotated[
        float | None, typer.Option(help="With --vector: merge regions under this area (m²) into a neighbour.")
    ] = None,
    stac: Annotated[bool | None, typer.Option("--stac/--no-stac", help="A STAC Item per scene (<name>_item.json; on).")] = None,
    bands: Annotated[
        str | None, typer.Option(help="STAC inputs: bands by asset key, name or common name, e.g. red,green,blue.")
    ] = None,
) -> None:
    """Predict whole scenes, streamed: class COG, colour and blend PNGs, class areas (JSON), QGIS
    styles, a STAC Item; optionally probabilities, confidence and polygons. Inputs may be local
    STAC Items or catalogues. Options not given are the checkpoint's `infer` section
    (`rsseg.config.infer.InferConfig`: every option, its default and its rules)."""
    from rsseg.gis.stac_input import expand_inputs
    from rsseg.infer import ScenesFailed, predict_files

    options = dict(mode=mode, window=window, keep=keep, fast_tile=fast_tile, batch_size=batch_size, blend=blend,
                   tta=tta, probabilities=probabilities, skip_existing=skip_existing, low_memory=low_memory,
                   overviews=overviews, precision=precision, confidence=confidence, disagreement=disagreement,
                   cog=cog, vector=vector, simplify=simplify, min_area=min_area, stac=stac)
    wanted = [b.strip() for b in bands.split(",") if b.strip()] if bands else None
    inputs = expand_inputs(inputs, wanted, out)
    results = predict_files(checkpoint, inputs, out, workers=workers, scheduler=scheduler,
                            threads=threads, engine=engine, raise_on_error=False, **options)
    for r in results:
        if r.ok:
            console.print(("(exists) " if r.skipped else "") + "  ".join(f"{k}: {v}" for k, v in r.items()))
    if any(not r.ok for r in results):
        raise ScenesFailed(results)  # one line per failed scene, exit 2


@app.command()
@_guard
def export(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint (.ckpt) to export.")],
    onnx_path: Annotated[Path, typer.Option("--onnx", help="ONNX file to write.")],
    opset: Annotated[int | None, typer.Option(help="ONNX opset (default 17, at most 20).")] = None,
    window: Annotated[
        int | None, typer.Option(help="Inference window stored in the file (default: checkpoint's).")
    ] = None,
    deepness: Annotated[
        bool, typer.Option("--deepness", help="For the Deepness QGIS plugin: probabilities out, its metadata in.")
    ] = False,
    resolution: Annotated[
        float | None, typer.Option(help="With --deepness: training imagery cm/px (default: as the checkpoint recorded).")
    ] = None,
) -> None:
    """Export a checkpoint to ONNX (dynamic batch, height, width), checked against torch."""
    from rsseg.trained.export import export_onnx

    path = export_onnx(checkpoint, onnx_path, opset=opset, window=window, deepness=deepness, resolution_cm=resolution)
    console.print(f"ONNX model: {path}")


@app.command()
@_guard
def quantize(
    model: Annotated[Path, typer.Argument(help="fp32 ONNX file from `rsseg export`.")],
    images: Annotated[list[Path], typer.Argument(help="Calibration images (training imagery of the model).")],
    out: Annotated[Path, typer.Option("--out", help="int8 ONNX file to write.")],
    windows: Annotated[int, typer.Option(help="Windows sampled: half calibrate, half check agreement.")] = 32,
    min_agreement: Annotated[
        float, typer.Option(help="Refuse the file below this argmax agreement with fp32 on the check windows.")
    ] = 0.99,
) -> None:
    """Quantize an exported model to int8 for faster CPU prediction (onnxruntime; no torch)."""
    from rsseg.trained.quantize import quantize_onnx

    result = quantize_onnx(model, images, out, windows=windows, min_agreement=min_agreement)
    console.print(f"int8 model: {result.path} (agrees with fp32 on {result.agreement:.3%} of "
                  f"{result.check_windows} check windows' pixels)")


@app.command()
@_guard
def demo(
    out: Annotated[Path, typer.Option(help="Folder for data, run and predictions.")] = Path("demo-output"),
    scene_size: Annotated[int, typer.Option(help="Side of the large scene to map.")] = 4096,
    minutes: Annotated[
        float | None, typer.Option(help="Cap on training minutes (default: the config's 9 epochs).")
    ] = None,
) -> None:
    """Generate synthetic data, train, evaluate and map a large scene; prints a summary."""
    from rsseg.demo import run_demo

    run_demo(out, scene_size=scene_size, train_minutes=minutes, console=console)




@app.command()
@_guard
def experiment(
    sweep: Annotated[Path, typer.Argument(help="Sweep YAML: base config + grid of overrides.")],
    out: Annotated[Path | None, typer.Option(help="Sweep folder (default: OUTPUT.DIR/NAME).")] = None,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Run just this run (repeatable); no tables.")
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bars.")] = True,
) -> None:
    """Run a grid of configs (resumable), then write results.md / results.csv (and summary.md with seeds)."""
    from rsseg.experiment import run_sweep

    _rows, folder = run_sweep(sweep, out=out, only=only, progress=progress,
                              on_run=lambda name, state: console.rule(f"{name}: {state}"))
    if only:
        return
    console.print((folder / "results.md").read_text())
    if (folder / "summary.md").exists():
        console.print((folder / "summary.md").read_text())
    console.print(f"results: {folder / 'results.md'}  {folder / 'results.csv'}")


@app.command()
@_guard
def report(run_dir: Annotated[Path, typer.Argument(help="Run directory.")]) -> None:
    """(Re)write RUN_DIR/report.html: curves, metrics, confusion matrix, priors, samples."""
    from rsseg.report import write_report

    console.print(f"report: {write_report(run_dir)}")


@app.command()
@_guard
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Evaluated run directories.")],
    out: Annotated[Path, typer.Option(help="Comparison page to write.")] = Path("comparison.html"),
) -> None:
    """One page comparing runs: results table and per-class IoU box plots."""
    from rsseg.report import write_comparison

    console.print(f"comparison: {write_comparison(run_dirs, out)}")
