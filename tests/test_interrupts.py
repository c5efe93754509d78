"""Ctrl-C, SIGTERM, a closed stdout and file-system errors end a command with one line, a non-zero exit code
and nothing half-written. Signals are sent to this very process at a chosen step (os.kill runs the Python
handler before the next line), so the tests are exact and fast; none waits on a timer."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from cnncalc import cli
from cnncalc.errors import CnnCalcError
from cnncalc.fileio import signals_held, write_all_atomic, write_atomic

ROOT = Path(__file__).resolve().parent.parent
CHAIN = "8x8x1|FC(2)"


class SigtermNotHandled(Exception):
    """Raised by the fallback SIGTERM handler: the command did not install its own (SIGTERM would kill pytest)."""


@pytest.fixture
def sigterm_fallback():
    """A SIGTERM handler for the test's duration, so a missing one fails the test instead of killing pytest."""

    def fallback(signum, frame):
        raise SigtermNotHandled

    previous = signal.signal(signal.SIGTERM, fallback)
    yield
    signal.signal(signal.SIGTERM, previous)


def run_cli(args: list[str]) -> int:
    """The command line as `cnncalc ARGS` runs it (through app.__call__, not CliRunner): its exit code."""
    try:
        cli.app(args, prog_name="cnncalc")
    except SystemExit as stop:
        return int(stop.code or 0)
    except KeyboardInterrupt:  # caught here: escaping, it would end the whole pytest session
        pytest.fail("Ctrl-C escaped the command line as a KeyboardInterrupt (a traceback)")
    pytest.fail("the command line returned instead of exiting")


# ---- signals while files are written -----------------------------------------------------------
def test_signals_held_are_delivered_when_the_block_ends():
    with pytest.raises(KeyboardInterrupt):
        with signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            reached = True  # the handler would have raised before this line
    assert reached


def test_ctrl_c_between_two_renames_still_completes_the_set(tmp_path, monkeypatch):
    real_replace = os.replace
    calls = []

    def replace_then_ctrl_c(source, target):
        real_replace(source, target)
        calls.append(target)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(os, "replace", replace_then_ctrl_c)
    files = {tmp_path / "out_files" / "a.svg": "<svg/>", tmp_path / "out.md": "report"}
    with pytest.raises(KeyboardInterrupt):
        write_all_atomic(files, new_folders=[tmp_path / "out_files"])
    # the whole set is in place (the interrupt came after the last rename), no temporary file is left
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.svg", "out.md", "out_files"]


def test_ctrl_c_right_after_a_temporary_file_is_made_leaves_no_litter(tmp_path, monkeypatch):
    real_mkstemp = tempfile.mkstemp

    def mkstemp_then_ctrl_c(*args, **kwargs):
        made = real_mkstemp(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)
        return made

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "out.onnx", b"model")
    assert list(tmp_path.iterdir()) == []


def test_sigterm_while_a_report_is_staged_ends_with_143_and_leaves_nothing(tmp_path, monkeypatch, capsys,
                                                                         sigterm_fallback):
    real_chmod = os.chmod

    def chmod_then_sigterm(path, mode):  # the temporary file is complete: the next step would rename it
        real_chmod(path, mode)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(os, "chmod", chmod_then_sigterm)
    (tmp_path / "old.md").write_text("previous")
    code = run_cli(["report", CHAIN, "-o", str(tmp_path / "old.md"), "--no-plots"])
    captured = capsys.readouterr()
    assert code == 128 + signal.SIGTERM and "terminated" in captured.err and "Traceback" not in captured.err
    assert [p.name for p in tmp_path.iterdir()] == ["old.md"] and (tmp_path / "old.md").read_text() == "previous"
    assert signal.getsignal(signal.SIGTERM) is not cli.raise_terminated  # the handler is put back afterwards


def test_ctrl_c_while_typer_builds_the_command_is_one_line(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.typer.main, "get_command", interrupted)
    assert run_cli(["analyze", CHAIN]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_ctrl_c_while_the_command_line_loads_is_no_traceback(tmp_path):
    # a finder that interrupts the import of cnncalc.cli, as a Ctrl-C while typer and rich load would
    script = ("import sys, runpy\n"
              "class Interrupt:\n"
              "    def find_spec(self, name, path=None, target=None):\n"
              "        if name == 'cnncalc.cli':\n"
              "            raise KeyboardInterrupt\n"
              "sys.meta_path.insert(0, Interrupt())\n"
              "runpy.run_module('cnncalc', run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=60)
    assert done.returncode == 130 and "Traceback" not in done.stderr


def test_stdout_closed_by_its_reader_is_a_quiet_exit(tmp_path):
    read_end, write_end = os.pipe()
    os.close(read_end)  # `| head -1` that has already gone: every write to stdout fails with EPIPE
    try:
        done = subprocess.run([sys.executable, "-m", "cnncalc", "analyze", CHAIN, "-f", "json"], cwd=tmp_path,
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
    finally:
        os.close(write_end)
    assert done.returncode == 1 and done.stderr == ""  # no "internal error", no traceback


# ---- file names and file-system errors ------------------------------------------------------------
def test_a_long_but_valid_file_name_can_be_written(tmp_path):
    target = tmp_path / ("a" * 245 + ".json")  # 250 bytes: a valid name; its temporary file's must be too
    write_atomic(target, "{}")
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


@pytest.mark.parametrize(("code", "hint"), [(errno.ENOSPC, "free some space"), (errno.EROFS, "read-only"),
                                            (errno.EACCES, "you may write to")])
def test_a_file_system_error_says_how_to_get_past_it(tmp_path, monkeypatch, code, hint):
    def failing_replace(source, target):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(CnnCalcError, match=hint):
        write_atomic(tmp_path / "out.json", "{}")
    assert list(tmp_path.iterdir()) == []
