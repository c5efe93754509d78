"""The `cnncalc` command line: thin commands that parse, call the library, and render.

Every user mistake arrives here as a CnnCalcError and leaves as one red message and
exit code 1 (see `friendly`); the library itself never prints.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from .errors import CnnCalcError

app = typer.Typer(
    name="cnncalc",
    help="What a convolutional network costs before you train it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
out = Console(soft_wrap=False)
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def friendly(command: F) -> F:
    """Turn CnnCalcError into a red message and exit 1; anything else is a bug, reported without a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except CnnCalcError as error:
            err.print(f"[bold red]error:[/bold red] {error.render()}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("[red]interrupted[/red]")
            raise typer.Exit(130) from None
        except Exception as error:  # noqa: BLE001 - the last line of defence against tracebacks
            if os.environ.get("CNNCALC_DEBUG"):
                raise
            err.print(f"[bold red]internal error:[/bold red] {type(error).__name__}: {error}\n"
                      "  this is a bug in cnncalc; set CNNCALC_DEBUG=1 for the traceback", highlight=False)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


# ---- shared options ------------------------------------------------------------
SpecArg = Annotated[list[str], typer.Argument(
    help="Spec chain text (quoted), a YAML spec file, or an .onnx model; several to compare.",
    show_default=False)]
ProfileOpt = Annotated[list[str] | None, typer.Option(
    "--profile", "-p", help="Hardware profile to estimate on (repeatable); see `cnncalc profiles`.")]
ProfilesFileOpt = Annotated[list[Path] | None, typer.Option(
    "--profiles", help="YAML file with extra or overriding hardware profiles (repeatable).")]
BatchOpt = Annotated[int | None, typer.Option("--batch", "-b", min=1, help="Batch size (default: the spec's, or 1).")]
DtypeOpt = Annotated[str | None, typer.Option("--dtype", help="float32, float16 or int8 (bytes per value).")]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="table, json, csv or markdown.")]
OutputOpt = Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")]
VariantOpt = Annotated[list[str] | None, typer.Option("--variant", help="Only these variants of a file (repeatable).")]
UnsupportedOpt = Annotated[bool, typer.Option(
    "--allow-unsupported", help="ONNX input: skip ops cnncalc does not know; totals become lower bounds.")]


def load_files(specs: list[str], allow_unsupported: bool = False) -> list[Any]:
    """Every spec named on the command line, loaded (chain text, YAML file or ONNX model)."""
    from .specfile import load

    kwargs = {"allow_unsupported": True} if allow_unsupported else {}
    return [load(spec, **kwargs) for spec in specs]


def pick_variants(files: list[Any], variants: list[str] | None) -> list[Any]:
    """All networks of the files in order, or only the variants named with --variant."""
    networks = [graph for spec_file in files for graph in spec_file.networks]
    if not variants:
        return networks
    known = [graph.name for graph in networks]
    missing = [name for name in variants if name not in known]
    if missing:
        raise CnnCalcError(f"no variant named {', '.join(missing)}", hint=f"variants here: {', '.join(known)}")
    return [graph for graph in networks if graph.name in variants]


def check_choice(value: str, choices: tuple[str, ...], option: str) -> str:
    """A flag value from a fixed set, or a clear error listing the set."""
    if value not in choices:
        raise CnnCalcError(f"{option} {value!r} is not one of {', '.join(choices)}",
                           hint=f"e.g. {option} {choices[0]}")
    return value


def emit(text: str | None, output: Path | None) -> None:
    """Machine-readable text to a file (atomically) or stdout."""
    if text is None:
        return
    if output is None:
        sys.stdout.write(text)
        return
    from .fileio import write_atomic

    write_atomic(output, text)
    err.print(f"wrote {output}")


def selected_profiles(spec_defaults: list[str], names: list[str] | None, files: list[Path] | None) -> list[Any]:
    """Profiles from -p, else the spec file's defaults; none when neither names any."""
    wanted = list(names or []) or spec_defaults
    if not wanted:
        return []
    from .hardware import get_profiles

    return get_profiles(wanted, files or ())


# ---- commands ------------------------------------------------------------------
@app.callback()
def root() -> None:
    """What a convolutional network costs before you train it."""


@app.command()
@friendly
def analyze(
    spec: SpecArg,
    profile: ProfileOpt = None,
    profiles_file: ProfilesFileOpt = None,
    batch: BatchOpt = None,
    dtype: DtypeOpt = None,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    variant: VariantOpt = None,
    allow_unsupported: UnsupportedOpt = False,
) -> None:
    """Per-layer shapes, receptive fields, params, MACs/FLOPs, memory, and hardware estimates."""
    from .analysis import analyze as run_analysis
    from .render import FORMATS, render

    check_choice(fmt, FORMATS, "--format")
    if dtype is not None:
        check_choice(dtype, ("float32", "float16", "int8"), "--dtype")
    files = load_files(spec, allow_unsupported)
    defaults = list(dict.fromkeys(name for spec_file in files for name in spec_file.profiles))
    profiles = selected_profiles(defaults, profile, profiles_file)
    graphs = pick_variants(files, variant)
    reports = [run_analysis(graph, batch=batch, dtype=dtype, profiles=profiles) for graph in graphs]
    if fmt == "table" and output is not None:
        fmt = "markdown" if output.suffix in (".md", ".markdown") else "json" if output.suffix == ".json" else fmt
    if fmt == "table" and output is not None:
        raise CnnCalcError("--output needs a file format", hint="add --format json, csv or markdown")
    emit(render(reports, fmt, out), output)


def main() -> None:
    """Entry point for `python -m cnncalc`."""
    app()


if __name__ == "__main__":
    main()
