"""The `cnncalc` command line: thin commands that parse, call the library, and render.

Every user mistake arrives here as a CnnCalcError and leaves as one red message and
exit code 1 (see `friendly`); the library itself never prints.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from .errors import CnnCalcError
from .ir import MAX_BATCH


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, a CI job's timeout, a container stopping) as an exception: it unwinds like Ctrl-C,
    so temporary files go again and the command ends with one line instead of dying mid-write."""

    signum = signal.SIGTERM


def raise_terminated(signum: int, frame: FrameType | None) -> None:
    """The SIGTERM handler while a command runs."""
    raise Terminated


def stopped_by(stop: KeyboardInterrupt) -> int:
    """Say why the command stopped (Ctrl-C or SIGTERM) and give its exit code, 128 + the signal's number."""
    if isinstance(stop, Terminated):
        err.print("[red]terminated[/red] (SIGTERM)", highlight=False)
        return 128 + signal.SIGTERM
    err.print("[red]interrupted[/red] (Ctrl-C)", highlight=False)
    return 128 + signal.SIGINT


class CnnCalcApp(typer.Typer):
    """The command line as a program (`cnncalc`, `python -m cnncalc`): SIGTERM unwinds like Ctrl-C, and a
    Ctrl-C before a command starts (while typer reads the options) is one line, not a traceback."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, raise_terminated) if in_main_thread else None
        try:
            return super().__call__(*args, **kwargs)
        except KeyboardInterrupt as stop:  # friendly() handles it once a command runs
            sys.exit(stopped_by(stop))
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


app = CnnCalcApp(
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
            # escaped: messages quote spec text and hints such as 'cnncalc[plot]', which are not rich markup
            err.print(
                f"[bold red]error:[/bold red] {escape(error.render())}", markup=True, highlight=False, soft_wrap=True
            )
            raise typer.Exit(1) from None
        except KeyboardInterrupt as stop:
            raise typer.Exit(stopped_by(stop)) from None
        except BrokenPipeError:  # stdout's reader has gone (`| head -1`): typer ends quietly, exit code 1
            raise
        except Exception as error:  # noqa: BLE001 - the last line of defence against tracebacks
            if os.environ.get("CNNCALC_DEBUG"):
                raise
            err.print(
                f"[bold red]internal error:[/bold red] {type(error).__name__}: {escape(str(error))}\n"
                "  this is a bug in cnncalc; set CNNCALC_DEBUG=1 for the traceback",
                highlight=False,
            )
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def say_written(path: Any) -> None:
    """'wrote PATH' on stderr: the path as typed (no rich markup in it, not broken across lines)."""
    err.print(f"wrote {path}", markup=False, highlight=False, soft_wrap=True)


# ---- shared options ------------------------------------------------------------
SpecArg = Annotated[
    list[str],
    typer.Argument(
        metavar="SPEC...",
        help="Spec chain text (quoted), a YAML spec file, or an .onnx model; several to compare.",
        show_default=False,
    ),
]
ProfileOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--profile", "-p", metavar="NAME", help="Hardware profile to estimate on (repeatable); see `cnncalc profiles`."
    ),
]
ProfilesFileOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--profiles", metavar="FILE", help="YAML file with extra or overriding hardware profiles (repeatable)."
    ),
]
BatchOpt = Annotated[
    int | None,
    typer.Option("--batch", "-b", metavar="N", min=1, max=MAX_BATCH, help="Batch size (default: the spec's, or 1)."),
]
DtypeOpt = Annotated[
    str | None, typer.Option("--dtype", metavar="DTYPE", help="float32, float16, float64 or int8 (bytes per value).")
]
FormatOpt = Annotated[str, typer.Option("--format", "-f", metavar="FORMAT", help="table, json, csv or markdown.")]
OutputOpt = Annotated[
    Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write to this file instead of stdout.")
]
VariantOpt = Annotated[
    list[str] | None, typer.Option("--variant", metavar="NAME", help="Only these variants of a file (repeatable).")
]
ObjectSizeOpt = Annotated[
    int | None,
    typer.Option(
        "--object-size",
        metavar="PIXELS",
        min=1,
        help="Object size in input pixels: advice names the layer whose receptive field first covers it.",
    ),
]
UnsupportedOpt = Annotated[
    bool,
    typer.Option("--allow-unsupported", help="ONNX input: skip ops cnncalc does not know; totals become lower bounds."),
]


def load_files(specs: list[str], allow_unsupported: bool = False) -> list[Any]:
    """Every spec named on the command line, loaded (chain text, YAML file or ONNX model)."""
    from .specfile import load

    kwargs = {"allow_unsupported": True} if allow_unsupported else {}
    return [load(spec, **kwargs) for spec in specs]


def pick_variants(files: list[Any], variants: list[str] | None) -> list[Any]:
    """All networks of the files in order, or only the variants named with --variant, in the order named
    (`diff --variant b --variant a` compares b with a)."""
    networks = [graph for spec_file in files for graph in spec_file.networks]
    if not variants:
        return networks
    known = [graph.name for graph in networks]
    missing = [name for name in variants if name not in known]
    if missing:
        raise CnnCalcError(f"no variant named {', '.join(missing)}", hint=f"variants here: {', '.join(known)}")
    return [graph for name in dict.fromkeys(variants) for graph in networks if graph.name == name]


def check_choice(value: str, choices: tuple[str, ...], option: str) -> str:
    """A flag value from a fixed set, or a clear error listing the set with the choice most likely meant."""
    if value not in choices:
        import difflib

        from .ir import DTYPE_ALIASES  # fp16, half, ...: the names the library's and profile files' hints know

        meant = DTYPE_ALIASES.get(value.lower()) if option == "--dtype" else None
        if meant not in choices:
            lowered = {choice.lower(): choice for choice in choices}
            close = difflib.get_close_matches(value.lower(), list(lowered), n=1)
            meant = lowered[close[0]] if close else None
        hint = f"did you mean {option} {meant}?" if meant else f"e.g. {option} {choices[0]}"
        raise CnnCalcError(f"{option} {value!r} is not one of {', '.join(choices)}", hint=hint)
    return value


def check_finite(value: float | None, option: str) -> None:
    """A float flag that is a number: click's ranges let nan and inf through (nan compares false to bounds)."""
    if value is not None and not math.isfinite(value):
        raise CnnCalcError(f"{option} {value} is not a finite number", hint=f"give {option} a number such as 0.5")


def emit(text: str | None, output: Path | None) -> None:
    """Machine-readable text to a file (atomically) or stdout."""
    if text is None:
        return
    if output is None:
        sys.stdout.write(text)
        return
    from .fileio import write_atomic

    write_atomic(output, text)
    say_written(output)


# ---- commands ------------------------------------------------------------------
@app.callback()
def root() -> None:
    """What a convolutional network costs before you train it."""
    fit_tables_to_stdout()


#: the width tables may take when stdout is a file or a pipe: wide enough for any table's natural width
REDIRECTED_WIDTH = 1000


def fit_tables_to_stdout() -> None:
    """Tables fit the terminal; redirected to a file or a pipe (CI logs, `> report.txt`) they keep their full
    width instead of rich's default of 80 columns, which cut numbers to '...'. COLUMNS, when set, wins."""
    redirected = not out.is_terminal and not os.environ.get("COLUMNS", "").isdigit()
    out.width = REDIRECTED_WIDTH if redirected else None  # type: ignore[assignment]  # None: detect again


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
    top: Annotated[
        int, typer.Option("--top", metavar="N", min=0, help="Only the N most expensive layers in the table.")
    ] = 0,
    object_size: ObjectSizeOpt = None,
) -> None:
    """Per-layer shapes, receptive fields, params, MACs/FLOPs, memory, and hardware estimates."""
    from .advice import refresh
    from .render import FORMATS, render

    check_choice(fmt, FORMATS, "--format")
    reports, profiles = analyzed(spec, profile, profiles_file, batch, dtype, variant, allow_unsupported)
    for report in reports:
        refresh(report, object_size, profiles)  # the advice that needs costs or --object-size
    if fmt == "table" and output is not None:  # the file's suffix names its format; any other gets the plain table
        fmt = OUTPUT_FORMATS.get(output.suffix.lower(), fmt)
    if fmt == "table" and output is not None:
        buffer = io.StringIO()
        render(reports, fmt, plain_console(buffer), top=top)
        emit(buffer.getvalue(), output)
        return
    emit(render(reports, fmt, out, top=top), output)


#: `-o FILE` without --format: the format a suffix names
OUTPUT_FORMATS = {".json": "json", ".csv": "csv", ".md": "markdown", ".markdown": "markdown"}


def plain_console(buffer: io.StringIO) -> Console:
    """Tables for a file: full width (as when stdout is redirected), no colour codes."""
    return Console(file=buffer, width=REDIRECTED_WIDTH, no_color=True, soft_wrap=False)


@app.command()
@friendly
def profiles(
    name: Annotated[
        str | None, typer.Argument(metavar="NAME", help="Show this profile's every figure and its source.")
    ] = None,
    profiles_file: ProfilesFileOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", metavar="FORMAT", help="table or json.")] = "table",
) -> None:
    """List the hardware profiles (built-in, per-user config, --profiles files), or show one."""
    from .hardware import format_table, load_profiles, pick_profiles, profile_detail_rows, profile_rows
    from .render import json_text

    check_choice(fmt, ("table", "json"), "--format")
    known = load_profiles(profiles_file or ())
    chosen = {name: pick_profiles(name, known)[0]} if name else known
    if fmt == "json":
        emit(json_text({key: p.to_json() for key, p in chosen.items()}), None)
        return
    emit(format_table(*(profile_detail_rows(chosen[name]) if name else profile_rows(chosen))), None)


@app.command()
@friendly
def calibrate(
    quick: Annotated[bool, typer.Option("--quick", help="Small sizes: a rough figure in well under a second.")] = False,
    save: Annotated[bool, typer.Option("--save/--no-save", help="Write the `host` profile to the config file.")] = True,
) -> None:
    """Measure this machine's matmul FLOP/s and memory bandwidth with NumPy; save them as profile `host`."""
    from .hardware import calibrate_host, format_table, host_profiles_file, profile_detail_rows, save_host_profile

    if save:
        host_profiles_file()  # a config file that cannot take the profile is refused before the measuring
    host = calibrate_host(matmul_n=256, copy_mib=8, conv_size=8, repeats=2) if quick else calibrate_host()
    emit(format_table(*profile_detail_rows(host)), None)
    if save:
        err.print(f"saved profile 'host' to {save_host_profile(host)}; use it with -p host", markup=False,
                  soft_wrap=True)


@app.command()
@friendly
def export(
    spec: Annotated[
        str,
        typer.Argument(
            metavar="SPEC", help="Spec chain text, a YAML spec file, or an .onnx model.", show_default=False
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="The .onnx file (default <name>.onnx); for variants <stem>-<variant>.onnx.",
        ),
    ] = None,
    variant: VariantOpt = None,
    seed: Annotated[
        int, typer.Option("--seed", metavar="SEED", min=0, help="Seed of the He/Kaiming weight initialization.")
    ] = 0,
    opset: Annotated[
        int | None,
        typer.Option("--opset", metavar="OPSET", show_default=False,
                     help="ONNX opset version, 13 or newer (default 17, or the first with every layer's attributes)."),
    ] = None,
    batch: Annotated[
        int | None,
        typer.Option("--batch", "-b", metavar="N", min=1, max=MAX_BATCH, help="Fix the batch dimension to N."),
    ] = None,
    dynamic_batch: Annotated[
        bool, typer.Option("--dynamic-batch", help="A symbolic batch dimension (the default without --batch).")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Write the network as an ONNX model with real (seeded) weights, ready to run or train."""
    from .onnx_io import export_targets, load_model, save_model, to_onnx

    if batch is not None and dynamic_batch:
        raise CnnCalcError("--batch and --dynamic-batch exclude each other", hint="give one of them")
    networks: list[tuple[Any, Any]]  # (graph, weights or None for seeded ones)
    if spec.lower().endswith(".onnx"):
        imported = load_model(spec)  # an imported model keeps its own weights
        networks = [(imported.graph, imported.weights)]
    else:
        networks = [(graph, None) for graph in pick_variants(load_files([spec]), variant)]
    targets = export_targets(output, [graph.name for graph, _ in networks], force=force)
    for (graph, weights), target in zip(networks, targets, strict=True):
        save_model(to_onnx(graph, weights, seed=seed, opset=opset, batch=batch), target, force=force)
        say_written(target)


@app.command()
@friendly
def run(
    model: Annotated[
        str,
        typer.Argument(
            metavar="MODEL", help="An .onnx model, a YAML spec file, or spec chain text.", show_default=False
        ),
    ],
    input_path: Annotated[
        Path | None,
        typer.Option(
            "--input", "-i", metavar="FILE",
            help="Input batch as .npy (or a .npz of one array), NCHW (N, C, H, W) like the model, in its dtype.",
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write the output array to this .npy.")
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", metavar="SEED", min=0, help="Seed of the random input and of a spec's weights.")
    ] = 0,
    batch: Annotated[
        int | None,
        typer.Option("--batch", "-b", metavar="N", min=1, max=MAX_BATCH, show_default=False,
                     help="Batch of the random input (default: the model's fixed batch or the spec's batch, else 1)."),
    ] = None,
    repeat: Annotated[
        int, typer.Option("--repeat", "-r", metavar="N", min=1, help="Timed runs; the median is reported.")
    ] = 1,
    fmt: Annotated[str, typer.Option("--format", "-f", metavar="FORMAT", help="table or json.")] = "table",
    dtype: Annotated[
        str | None,
        typer.Option("--dtype", metavar="DTYPE", show_default=False,
                     help="float32 or float64 (default: float64 for a float64 model, else float32)."),
    ] = None,
    check: Annotated[bool, typer.Option("--check", help="Also run onnxruntime and report the difference.")] = False,
    variant: VariantOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the --output file.")] = False,
) -> None:
    """Execute the network with the NumPy backend: output, per-layer time, latency, throughput, memory."""
    import io

    from .fileio import write_atomic
    from .hardware import format_table
    from .render import json_text
    from .runtime import Runtime, check_with_onnxruntime, measure, random_input, read_input

    check_choice(fmt, ("table", "json"), "--format")
    if dtype is not None:
        check_choice(dtype, ("float32", "float64"), "--dtype")
    if output is not None:  # refused before the run: an existing file without --force, a missing folder
        from .fileio import check_writable

        check_writable(output, force=force)
    if check:  # refused before the timed runs, not after them
        import importlib.util

        if importlib.util.find_spec("onnxruntime") is None:
            raise CnnCalcError("--check needs onnxruntime, which is not installed",
                               hint="pip install onnxruntime, or run without --check")
    source = model if model.lower().endswith(".onnx") else None
    if source is not None:
        graph, weights = onnx_network(model, variant)
    else:
        graph, weights = single_network(model, variant), None
    own = dtype or ("float64" if graph.dtype == "float64" else "float32")  # the model's, where the backend has it
    runtime = Runtime(graph, weights, own) if weights is not None else Runtime.from_graph(graph, seed=seed, dtype=own)
    if input_path is not None:
        x = read_input(input_path, runtime)
        if batch is not None and batch != x.shape[0]:  # the file decides the batch: a different --batch is a mistake
            raise CnnCalcError(f"--batch {batch} but {input_path} holds {x.shape[0]} samples",
                               hint="leave out --batch with --input (the file's samples are the batch)")
    else:
        x = random_input(runtime, batch if batch is not None else runtime.graph.batch, seed)
    summary = measure(runtime, x, repeat)
    if check:
        from dataclasses import replace

        from .onnx_io import to_onnx

        # a spec computed in float32 is compared in float32: a float64 spec's own export has Convs onnxruntime
        # cannot run, which made --dtype float32 --check fail with a hint to do just that
        exported = runtime.graph if runtime.dtype.name != "float32" else replace(runtime.graph, dtype="float32")
        onnx_model = source if source is not None else to_onnx(exported, runtime.weights)
        summary.check = check_with_onnxruntime(onnx_model, runtime.graph.input_name, x, summary.output)
    if output is not None:
        buffer = io.BytesIO()
        np_save(buffer, summary.output)
        write_atomic(output, buffer.getvalue(), force=force)
        say_written(output)
    if fmt == "json":
        emit(json_text(summary.to_json()), None)
        return
    lines = [
        f"{summary.model}: batch {summary.batch}, {summary.dtype}, median of {summary.repeat} run(s)"
        + (f", split over {summary.parts} threads (docs/runtime.md)" if summary.parts > 1 else "")
        + (f", {summary.blas_limited_runs} of them on fewer BLAS threads since other programs were using "
           "cores (docs/runtime.md)" if summary.blas_limited_runs else ""),
        f"latency {summary.latency_s * 1e3:.2f} ms, {summary.throughput_per_s:.1f} samples/s, "
        f"{summary.achieved_flops_per_s / 1e9:.1f} GFLOP/s achieved",
        f"peak live activations {summary.peak_live_bytes / 2**20:.2f} MiB "
        f"(analysis: {summary.predicted_peak_bytes / 2**20:.2f} MiB), weights {summary.weight_bytes / 2**20:.2f} MiB",
    ]
    if summary.check is not None:
        lines.append(
            f"onnxruntime {summary.check['onnxruntime']}: max abs diff {summary.check['max_abs_diff']:.3g}, "
            f"max rel diff {summary.check['max_rel_diff']:.3g}"
        )
    emit(format_table(*summary.table_rows()) + "\n".join(lines) + "\n", None)


def np_save(handle: Any, array: Any) -> None:
    """np.save without pickles, imported late so commands that do not run models stay light."""
    import numpy as np

    np.save(handle, array, allow_pickle=False)


@app.command("spec")
@friendly
def spec_text(spec: SpecArg, variant: VariantOpt = None) -> None:
    """Print the equivalent spec chain of a model (an imported .onnx above all), to edit and analyse."""
    from .spec_text import to_spec  # not through onnx_io, which loads onnx and NumPy for a spec's text

    graphs = pick_variants(load_files(spec), variant)
    for graph in graphs:
        if len(graphs) > 1:
            sys.stdout.write(f"# {graph.name}\n")
        sys.stdout.write(to_spec(graph) + "\n")
        # a chain has no place for a file's batch and dtype: without them it analyses at batch 1, float32
        flags = [f"--batch {graph.batch}"] * (graph.batch != 1)
        flags += [f"--dtype {graph.dtype}"] * (graph.dtype != "float32")
        if flags:
            err.print(f"note: {graph.name} is analysed at batch {graph.batch}, {graph.dtype}; the chain does not "
                      f"say so: give it {' '.join(flags)}", markup=False, highlight=False, soft_wrap=True)


# ---- plots, reports, diffs (issue 7) ----------------------------------------------
def chosen_profiles(files: list[Any], names: list[str] | None, profiles_file: list[Path] | None) -> list[Any]:
    """Profiles from -p, else the spec files' `profiles:` lists (a wrong name there names its file); none when
    neither names any. The profiles are loaded once, and only when a profile or a --profiles file is given."""
    from .hardware import get_profiles, load_profiles, pick_profiles

    if names:
        return get_profiles(names, profiles_file or ())
    defaults = list(dict.fromkeys(name for spec_file in files for name in spec_file.profiles))
    if not defaults and not profiles_file:
        return []
    known = load_profiles(profiles_file or ())  # a wrong --profiles file is an error even when no profile is named
    for spec_file in files:
        try:
            pick_profiles(spec_file.profiles, known)
        except CnnCalcError as error:
            raise CnnCalcError(f"{spec_file.path or spec_file.name}: `profiles:` {error.message}",
                               hint=error.hint) from None
    return pick_profiles(defaults, known)


def analyzed(
    spec: list[str],
    profile: list[str] | None,
    profiles_file: list[Path] | None,
    batch: int | None,
    dtype: str | None,
    variant: list[str] | None,
    allow_unsupported: bool = False,
    loaded: list[Any] | None = None,
) -> tuple[list[Any], list[Any]]:
    """Load, pick variants, analyse on the chosen profiles: (reports, profiles); the files go to `loaded`."""
    from .analysis import analyze as run_analysis

    if dtype is not None:
        check_choice(dtype, ("float32", "float16", "float64", "int8"), "--dtype")
    files = load_files(spec, allow_unsupported)
    if loaded is not None:
        loaded.extend(files)
    profiles = chosen_profiles(files, profile, profiles_file)
    graphs = pick_variants(files, variant)
    return [run_analysis(graph, batch=batch, dtype=dtype, profiles=profiles) for graph in graphs], profiles


@app.command()
@friendly
def plot(
    spec: SpecArg,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="A .png or .svg file; with several kinds, <stem>-<kind>.<ext> beside it.",
            show_default=False,
        ),
    ],
    kind: Annotated[
        list[str] | None,
        typer.Option(
            "--kind",
            "-k",
            metavar="KIND",
            help="layers, receptive-field, roofline or variants (repeatable; default: all that apply).",
        ),
    ] = None,
    profile: ProfileOpt = None,
    profiles_file: ProfilesFileOpt = None,
    batch: BatchOpt = None,
    dtype: DtypeOpt = None,
    variant: VariantOpt = None,
    object_size: ObjectSizeOpt = None,
    allow_unsupported: UnsupportedOpt = False,
) -> None:
    """Draw per-layer MACs and memory, receptive-field growth, rooflines per profile, variants side by side."""
    from .fileio import check_writable, write_all_atomic
    from .plots import KINDS, applicable_kinds, figure_bytes, figure_for, output_paths, require_matplotlib

    require_matplotlib()
    for name in kind or []:
        check_choice(name, KINDS, "--kind")
    check_writable(output, force=True)  # a missing folder named now, not after every figure is drawn
    reports, profiles = analyzed(spec, profile, profiles_file, batch, dtype, variant, allow_unsupported)
    paths = output_paths(output, kind or applicable_kinds(reports, profiles))
    # every figure is drawn before any file is written: a failure leaves no partial set behind
    figures = {path: figure_bytes(figure_for(name, reports, profiles, object_size), path.suffix)
               for name, path in paths.items()}
    write_all_atomic(figures)
    for path in figures:
        say_written(path)


@app.command()
@friendly
def report(
    spec: SpecArg,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="report.md (images in <stem>_files/ beside it) or report.html (self-contained).",
            show_default=False,
        ),
    ],
    profile: ProfileOpt = None,
    profiles_file: ProfilesFileOpt = None,
    batch: BatchOpt = None,
    dtype: DtypeOpt = None,
    variant: VariantOpt = None,
    object_size: ObjectSizeOpt = None,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Include the plots (needs matplotlib).")] = True,
    title: Annotated[
        str | None, typer.Option("--title", metavar="TITLE", help="Document title (default: the spec's name).")
    ] = None,
    allow_unsupported: UnsupportedOpt = False,
) -> None:
    """One document for a design review: spec, layers, profiles, plots and advice (Markdown or HTML)."""
    from .errors import SpecError
    from .report import build, failed

    suffix = output.suffix.lower()
    if suffix not in (".md", ".markdown", ".html", ".htm"):
        raise CnnCalcError(f"cannot write a report as {output.name}", hint="use a .md or .html file name")
    from .fileio import check_writable

    check_writable(output, force=True)  # a missing folder named now, not after the plots are drawn
    sources = [(arg, _spec_source(arg)) for arg in spec]
    name = title or (Path(spec[0]).stem if spec[0].lower().endswith((".yaml", ".yml", ".onnx")) else "network")
    if plots:
        from .plots import require_matplotlib

        require_matplotlib()
    files: list[Any] = []
    try:
        reports, profiles = analyzed(spec, profile, profiles_file, batch, dtype, variant, allow_unsupported, files)
    except SpecError as error:  # the report still says what failed and how to fix it
        _write_report(failed(f"cnncalc report: {name}", error, sources), output)
        raise
    if title is None and files and files[0].path is not None:
        name = files[0].name  # a spec file's `name:` (an ONNX model's graph name)
    doc = build(
        reports,
        title=f"cnncalc report: {name}",
        description=reports[0].description if reports else "",
        sources=sources,
        profiles=profiles,
        object_size=object_size,
        plots=plots,
    )
    _write_report(doc, output)


def _spec_source(arg: str) -> str:
    """The spec as the user wrote it: a YAML file's text, or the chain itself."""
    path = Path(arg)
    if arg.lower().endswith((".yaml", ".yml")) and path.is_file():
        return path.read_text(encoding="utf-8", errors="replace")
    if arg.lower().endswith(".onnx"):
        return f"(ONNX model {path.name})"
    return arg


def _write_report(doc: Any, output: Path) -> None:
    from .fileio import where_to_write, write_all_atomic, write_atomic
    from .report import to_html, to_markdown

    if output.suffix.lower() in (".html", ".htm"):
        write_atomic(output, to_html(doc))
    else:
        where, in_place = where_to_write(output)
        folder = where.parent if not in_place else output.parent  # beside the file a link points to
        image_dir = f"{output.stem}_files"
        text, assets = to_markdown(doc, image_dir)
        # the images and the document as one unit, the document renamed into place last
        files: dict[Path, bytes | str] = {folder / relative: data for relative, data in assets.items()}
        files[output] = text
        write_all_atomic(files, new_folders=[folder / image_dir])
    say_written(output)


@app.command()
@friendly
def diff(
    spec: SpecArg,
    profile: ProfileOpt = None,
    profiles_file: ProfilesFileOpt = None,
    batch: BatchOpt = None,
    dtype: DtypeOpt = None,
    variant: VariantOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", metavar="FORMAT", help="table, json or markdown.")] = "table",
    output: OutputOpt = None,
    changed_only: Annotated[bool, typer.Option("--changed-only", help="Hide the rows that did not change.")] = False,
    allow_unsupported: UnsupportedOpt = False,
) -> None:
    """Two specs (or two variants of one file) layer by layer: shape, params, MACs, memory, time per profile."""
    from .diff import diff_reports, render_diff, to_json, to_markdown

    check_choice(fmt, ("table", "json", "markdown"), "--format")
    reports, _ = analyzed(spec, profile, profiles_file, batch, dtype, variant, allow_unsupported)
    if len(reports) != 2:
        names = ", ".join(r.name for r in reports)
        raise CnnCalcError(
            f"diff compares two networks; these specs hold {len(reports)} ({names})",
            hint="give two specs, a file with two variants, or pick two with --variant",
        )
    result = diff_reports(reports[0], reports[1])
    if fmt == "table" and output is not None:  # the file's suffix names its format; any other gets the plain table
        fmt = OUTPUT_FORMATS.get(output.suffix.lower(), fmt)
        if fmt == "csv":
            raise CnnCalcError("diff writes no CSV", hint="use a .json or .md file, or --format json|markdown")
    if fmt == "table":
        console = out if output is None else plain_console(buffer := io.StringIO())
        render_diff(result, console, changed_only)
        if output is not None:
            emit(buffer.getvalue(), output)
        return
    emit(to_json(result) if fmt == "json" else to_markdown(result, changed_only), output)


def single_network(model: str, variant: list[str] | None) -> Any:
    """The one network a spec names (after --variant), or an error listing the variants to pick from."""
    graphs = pick_variants(load_files([model]), variant)
    if len(graphs) != 1:
        raise CnnCalcError(
            f"{model} has {len(graphs)} networks; this command takes one",
            hint=f"pick one with --variant ({', '.join(g.name for g in graphs)})",
        )
    return graphs[0]


def onnx_network(path: str, variant: list[str] | None) -> tuple[Any, Any]:
    """An .onnx model's graph and its own weights; a --variant that is not its name is refused, as `analyze`
    refuses it (run, train and verify used to ignore it and go on with the file's network)."""
    ((graph, weights),) = networks_with_weights([path], variant)
    return graph, weights


def one_network(model: str, variant: list[str] | None, seed: int) -> tuple[Any, Any]:
    """The graph and weights of one network: an .onnx model's own, or a spec's He-initialized from `seed`."""
    from .weights import init_weights

    if model.lower().endswith(".onnx"):
        return onnx_network(model, variant)
    graph = single_network(model, variant)
    return graph, init_weights(graph, seed)


def networks_with_weights(specs: list[str], variant: list[str] | None) -> list[tuple[Any, Any]]:
    """(graph, weights) of every network named (or its --variant ones): an .onnx model with its own weights
    (a trained file is checked as it is, also beside other files), a spec's with None (He weights from --seed)."""
    from types import SimpleNamespace

    from .onnx_io import load_model

    files: list[Any] = []
    own_weights: dict[int, Any] = {}  # id(graph) -> an .onnx file's weights
    for spec in specs:
        if spec.lower().endswith(".onnx"):
            imported = load_model(spec)
            files.append(SimpleNamespace(networks=[imported.graph]))
            own_weights[id(imported.graph)] = imported.weights
        else:
            files.extend(load_files([spec]))
    return [(graph, own_weights.get(id(graph))) for graph in pick_variants(files, variant)]


@app.command()
@friendly
def train(
    model: Annotated[
        str,
        typer.Argument(
            metavar="MODEL", help="A YAML spec file, spec chain text, or an .onnx model.", show_default=False
        ),
    ],
    data: Annotated[
        str, typer.Option("--data", metavar="DATA", help="synthetic, digits (scikit-learn), or a .npz with x and y.")
    ] = "synthetic",
    epochs: Annotated[
        int, typer.Option("--epochs", "-e", metavar="N", min=1, help="Passes over the training data.")
    ] = 10,
    batch: Annotated[
        int, typer.Option("--batch", "-b", metavar="N", min=1, max=MAX_BATCH, help="Samples per step.")
    ] = 32,
    lr: Annotated[
        float | None, typer.Option("--lr", metavar="LR", help="Learning rate (default 0.01 Adam, 0.05 SGD).")
    ] = None,
    optimizer: Annotated[
        str, typer.Option("--optimizer", metavar="OPTIMIZER", help="adam, sgd, sgd-momentum or nesterov.")
    ] = "adam",
    weight_decay: Annotated[
        float, typer.Option("--weight-decay", metavar="WEIGHT_DECAY", min=0.0, help="L2 on kernels and FC weights.")
    ] = 0.0,
    schedule: Annotated[
        str, typer.Option("--schedule", metavar="SCHEDULE", help="cosine, step or constant.")
    ] = "cosine",
    loss: Annotated[str, typer.Option("--loss", metavar="LOSS", help="auto, cross-entropy, nll or mse.")] = "auto",
    patience: Annotated[
        int,
        typer.Option(
            "--patience",
            metavar="N",
            min=0,
            help="Stop after N epochs without a better validation loss, keeping the best weights (0: off).",
        ),
    ] = 0,
    val_fraction: Annotated[
        float | None,
        typer.Option("--val-fraction", metavar="VAL_FRACTION", show_default=False,
                     help="Share held out to validate (default 0.2; not with a .npz that has x_val)."),
    ] = None,
    samples: Annotated[
        int | None, typer.Option("--samples", metavar="N", min=2, help="Size of the synthetic set.")
    ] = None,
    layout: Annotated[
        str, typer.Option("--layout", metavar="LAYOUT", help=".npz x layout: auto, nhwc or nchw.")
    ] = "auto",
    seed: Annotated[
        int, typer.Option("--seed", metavar="SEED", min=0, help="Seed of weights, data split, shuffling, dropout.")
    ] = 0,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE", help="Save the trained model (.onnx).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the --output file.")] = False,
    fmt: Annotated[
        str, typer.Option("--format", "-f", metavar="FORMAT", help="table or json (with the per-epoch history).")
    ] = "table",
    variant: VariantOpt = None,
) -> None:
    """Train the network with the NumPy backend; Ctrl-C stops after the current step and still saves."""
    from .hardware import format_table
    from .render import json_text
    from .train import TrainConfig, history_rows, load_data, summary_lines
    from .train import train as run_training

    check_choice(fmt, ("table", "json"), "--format")
    for value, option in ((lr, "--lr"), (weight_decay, "--weight-decay"), (val_fraction, "--val-fraction")):
        check_finite(value, option)
    config = TrainConfig(
        epochs=epochs,
        batch=batch,
        lr=lr,
        optimizer=optimizer,
        weight_decay=weight_decay,
        schedule=schedule,
        loss=loss,
        seed=seed,
        patience=patience,
    ).check()
    if output is not None:  # refused now, not after the training: an existing file, a missing folder
        from .fileio import check_writable

        check_writable(output, force=force)
    graph, weights = one_network(model, variant, seed)
    if output is not None:
        from .onnx_io import check_file_size

        check_file_size(graph)  # a model protobuf cannot hold, before the training
    if samples is not None and data != "synthetic":  # it would be ignored: the file or digits decide the count
        raise CnnCalcError(f"--samples sizes the synthetic set, not --data {data}",
                           hint="leave out --samples, or use --data synthetic")
    dataset = load_data(data, graph, seed, val_fraction, samples, layout)
    with training_progress(epochs) as (on_step, on_epoch):
        result = run_training(graph, weights, dataset, config, on_step, on_epoch)
    if output is not None:
        from .onnx_io import save_model, to_onnx

        save_model(to_onnx(graph, result.weights, seed=seed), output, force=force)
        say_written(output)
    if fmt == "json":
        emit(json_text(result.to_dict() | {"output": str(output) if output else None}), None)
    else:
        emit(format_table(*history_rows(result)) + "\n".join(summary_lines(result)) + "\n", None)
    if result.interrupted:
        raise typer.Exit(130)


@contextlib.contextmanager
def training_progress(epochs: int) -> Iterator[tuple[Callable[..., None], Callable[..., None]]]:
    """A rich progress bar per epoch on stderr, with running loss, accuracy and samples/s."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[figures]}"),
        console=err,
    )
    tasks: dict[int, Any] = {}

    def on_step(info: Any) -> None:
        if info.epoch not in tasks:
            tasks[info.epoch] = progress.add_task(f"epoch {info.epoch}/{epochs}", total=info.steps, figures="")
        progress.update(
            tasks[info.epoch],
            completed=info.step,
            figures=(f"loss {info.loss:.4f}  acc {100 * info.accuracy:.1f}%  {info.samples_per_s:,.0f} samples/s"),
        )

    def on_epoch(record: Any) -> None:
        if record.epoch in tasks:
            progress.update(
                tasks[record.epoch],
                figures=(
                    f"loss {record.train_loss:.4f}  acc {100 * record.train_accuracy:.1f}%  "
                    f"val {record.val_loss:.4f} / {100 * record.val_accuracy:.1f}%  "
                    f"{record.samples_per_s:,.0f} samples/s"
                ),
            )

    with progress:
        yield on_step, on_epoch


@app.command()
@friendly
def verify(
    spec: SpecArg,
    seed: Annotated[
        int,
        typer.Option("--seed", metavar="SEED", min=0,
                     help="Seed of the random inputs and of a spec's weights (an .onnx model keeps its own)."),
    ] = 0,
    grad_seconds: Annotated[
        float,
        typer.Option(
            "--grad-seconds",
            metavar="GRAD_SECONDS",
            min=0.0,
            help="Time for finite differences; past it tensors are checked in groups.",
        ),
    ] = 20.0,
    fmt: Annotated[str, typer.Option("--format", "-f", metavar="FORMAT", help="table or json.")] = "table",
    variant: VariantOpt = None,
) -> None:
    """Check the chain spec -> analysis -> ONNX -> execution -> gradients -> training; exit 1 if a line fails."""
    from .render import json_text
    from .verify import summary_line
    from .verify import verify as run_checks

    check_choice(fmt, ("table", "json"), "--format")
    check_finite(grad_seconds, "--grad-seconds")
    reports = []
    for graph, weights in networks_with_weights(spec, variant):  # weights: an .onnx file's own, or None
        if fmt == "table":
            out.print(escape(graph.name), style="bold", highlight=False)

        def show(check: Any) -> None:
            if fmt == "table":
                style = {"PASS": "green", "FAIL": "bold red", "SKIP": "yellow"}[check.status]
                out.print(
                    f"  [{style}]{check.status}[/{style}]  {escape(check.name)}: {escape(check.detail)}",
                    highlight=False,
                    soft_wrap=True,
                )

        reports.append(run_checks(graph, seed=seed, grad_budget_s=grad_seconds, on_check=show, weights=weights))
        if fmt == "table":
            out.print(escape(summary_line(reports[-1])), highlight=False, soft_wrap=True)
    if fmt == "json":
        emit(json_text([report.to_dict() for report in reports]), None)
    if not all(report.ok for report in reports):
        raise typer.Exit(1)


def main() -> None:
    """Entry point for `python -m cnncalc`."""
    app()


if __name__ == "__main__":
    main()
