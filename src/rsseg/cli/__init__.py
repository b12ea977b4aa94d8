"""Command line: each command is a thin shell over a library function.

Commands live in one module per area (``run``: train/evaluate/predict/...; ``models``;
``data``; ``index``), registered on the one ``app`` here.

User errors (``RsSegError``) print one line and exit with code 2; ``--debug`` shows the
traceback.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

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
            # escaped: a message quoting e.g. [nan] or [1, 2] must print as written
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True)
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


def main() -> None:
    app()


# the command modules register their commands on ``app`` when imported (after it exists)
from rsseg.cli import data, explain, gis, index, models, run, ssl  # noqa: F401

if __name__ == "__main__":
    main()
