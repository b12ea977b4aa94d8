"""Command line: each command is a thin shell over a library function.

User errors (``RsSegError``) print one line and exit with code 2; ``--debug`` shows the
traceback.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from rsseg import __version__
from rsseg.errors import RsSegError

app = typer.Typer(
    name="rsseg",
    help="rsseg: semantic segmentation of satellite and aerial imagery, from one YAML file.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}

F = TypeVar("F", bound=Callable[..., Any])


def _guard(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RsSegError as exc:
            if _state["debug"]:
                raise
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]; checkpoints written so far are kept")
            raise typer.Exit(code=130) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        console.print(f"rsseg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False,
) -> None:
    _state["debug"] = debug
    if debug:
        logging.basicConfig(level=logging.INFO)
    else:  # keep the terminal for progress bars and results (train() quiets Lightning's logs)
        warnings.filterwarnings("ignore", module="lightning")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config value, e.g. --set train.epochs=3 (repeatable)."),
]


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
    from rsseg.train import train as run_train

    cfg = load_config(config, overrides or [])
    result = run_train(cfg, config_name=config.stem, resume=resume)
    console.print(f"run directory: {result.run_dir}")
    console.print(f"best checkpoint: {result.best_checkpoint} (val mIoU {result.best_val_miou})")


@app.command()
@_guard
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint (.ckpt) to evaluate.")],
    config: Annotated[
        Path | None, typer.Option(help="Config whose data section to use (default: the checkpoint's).")
    ] = None,
    split: Annotated[str, typer.Option(help="Split to evaluate: train, val or test.")] = "test",
    out: Annotated[Path | None, typer.Option(help="Output folder (default: RUN/eval-SPLIT).")] = None,
    overrides: SetOption = None,
) -> None:
    """Evaluate a checkpoint on whole scenes: metrics.json and a confusion-matrix PNG."""
    from rsseg.config import load_config
    from rsseg.evaluate import evaluate as run_evaluate
    from rsseg.metrics import format_metrics_table

    cfg = load_config(config, overrides or []) if config or overrides else None
    if cfg is None and overrides:
        raise RsSegError("--set needs --config")
    result = run_evaluate(checkpoint, config=cfg, split=split, out=out)
    console.print(format_metrics_table(result.metrics, title=f"{split} split"))
    console.print(f"metrics: {result.metrics_path}\nconfusion matrix: {result.confusion_png}")


@app.command()
@_guard
def predict(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint (.ckpt).")],
    inputs: Annotated[list[Path], typer.Argument(help="Images to map: GeoTIFF, JPEG or PNG.")],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("predictions"),
    window: Annotated[int | None, typer.Option(help="Window size (default: checkpoint's).")] = None,
    keep: Annotated[int | None, typer.Option(help="Kept centre size (default: checkpoint's).")] = None,
) -> None:
    """Predict whole scenes with Border Correction: class GeoTIFF + colour and blend PNGs."""
    from rsseg.checkpoint import load_predictor
    from rsseg.infer import predict_files

    predictor = load_predictor(checkpoint)
    predictor.window = window or predictor.window
    predictor.keep = keep or predictor.keep
    for paths in predict_files(predictor, inputs, out):
        console.print("  ".join(f"{k}: {v}" for k, v in paths.items()))


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


models_app = typer.Typer(help="Model architectures of the registry.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("list")
@_guard
def models_list(
    parameters: Annotated[
        bool, typer.Option("--parameters", help="Also build each model and count its parameters (slow).")
    ] = False,
    bands: Annotated[int, typer.Option(help="Input bands for --parameters.")] = 3,
    classes: Annotated[int, typer.Option(help="Classes for --parameters.")] = 7,
) -> None:
    """List the registered models, their options (model.NAME in the config) and defaults."""
    from rich.table import Table

    from rsseg.models import describe_models

    rows = describe_models(with_parameters=parameters, in_channels=bands, num_classes=classes)
    table = Table(title="models (config: model.name and its options)")
    table.add_column("name", style="bold")
    table.add_column("options (default)")
    if parameters:
        table.add_column(f"parameters ({bands} bands, {classes} classes)", justify="right")
    for row in rows:
        options = "\n".join(f"{k}: {'null' if v is None else v}" for k, v in row["options"].items()) or "-"
        cells = [row["name"], options]
        if parameters:
            cells.append(f"{row['parameters'] / 1e6:.1f}M" if "parameters" in row else "?")
        table.add_row(*cells)
    console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
