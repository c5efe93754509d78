"""Files are written whole or not at all, one file or a set of them (a report and its images, a plot per kind)."""

from __future__ import annotations

import errno
import tempfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cnncalc.cli import app
from cnncalc.errors import CnnCalcError
from cnncalc.fileio import write_all_atomic, write_atomic

ROOT = Path(__file__).resolve().parent.parent
NOTES = str(ROOT / "specs" / "titan_x_vs_jetson_nano.yaml")
runner = CliRunner()


def disk_full_on_call(monkeypatch, failing_call: int) -> None:
    """Make the n-th temporary file of a write fail as a full disk would."""
    real = tempfile.mkstemp
    calls = {"n": 0}

    def mkstemp(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == failing_call:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def test_a_set_is_written_whole(tmp_path):
    files = {tmp_path / "a.txt": "first", tmp_path / "pics" / "b.bin": b"\x00\x01"}
    write_all_atomic(files, new_folders=[tmp_path / "pics"])
    assert (tmp_path / "a.txt").read_text() == "first" and (tmp_path / "pics" / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.txt", "b.bin", "pics"]  # no temporary files left


def test_a_failure_part_way_leaves_nothing(tmp_path, monkeypatch):
    (tmp_path / "old.md").write_text("the previous report")
    disk_full_on_call(monkeypatch, 2)
    files = {tmp_path / "new_files" / "one.svg": "<svg/>", tmp_path / "new_files" / "two.svg": "<svg/>",
             tmp_path / "old.md": "the new report"}
    with pytest.raises(CnnCalcError, match="No space left"):
        write_all_atomic(files, new_folders=[tmp_path / "new_files"])
    # the first image was complete, but nothing was renamed into place and the folder made for it is gone
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["old.md"]
    assert (tmp_path / "old.md").read_text() == "the previous report"


def test_every_target_is_checked_before_anything_is_written(tmp_path):
    (tmp_path / "taken.png").write_text("keep")
    with pytest.raises(CnnCalcError, match="already exists"):
        write_all_atomic({tmp_path / "first.png": "x", tmp_path / "taken.png": "y"}, force=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.png"]
    with pytest.raises(CnnCalcError, match="does not exist"):
        write_atomic(tmp_path / "no" / "such" / "folder.onnx", b"")
    assert not (tmp_path / "no").exists()


def test_markdown_report_on_a_full_disk_writes_nothing(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    disk_full_on_call(monkeypatch, 3)  # two images staged, the third fails
    result = runner.invoke(app, ["report", NOTES, "-o", str(tmp_path / "design.md"), "-p", "jetson-nano"])
    assert result.exit_code == 1 and "No space left" in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_report_into_a_missing_folder_is_refused(tmp_path):
    result = runner.invoke(app, ["report", NOTES, "-o", str(tmp_path / "nowhere" / "r.md"), "--no-plots"])
    assert result.exit_code == 1 and "does not exist" in result.output and "mkdir -p" in result.output
    assert list(tmp_path.iterdir()) == []


def test_plot_set_is_all_or_nothing(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import cnncalc.plots

    real = cnncalc.plots.figure_for
    drawn = []

    def figure_for(name, *args):
        drawn.append(name)
        if len(drawn) == 2:
            raise CnnCalcError("cannot draw this one")
        return real(name, *args)

    monkeypatch.setattr(cnncalc.plots, "figure_for", figure_for)
    result = runner.invoke(app, ["plot", NOTES, "-o", str(tmp_path / "notes.svg")])
    assert result.exit_code == 1 and "cannot draw this one" in result.output
    assert list(tmp_path.iterdir()) == []  # the first figure was drawn, but not written alone


# ---- reading NumPy files ------------------------------------------------------------------------------
def small_runtime():
    from cnncalc.runtime import Runtime
    from cnncalc.spec import parse

    return Runtime.from_graph(parse("8x8x3|ReLU"))  # takes (N, 3, 8, 8) float32


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_run_input_from_a_npz_with_one_array(tmp_path, save):
    from cnncalc.runtime import read_input

    batch = np.arange(2 * 3 * 8 * 8, dtype=np.float32).reshape(2, 3, 8, 8)
    save(tmp_path / "x.npz", batch)  # np.savez(path, x) names the one array arr_0
    assert np.array_equal(read_input(tmp_path / "x.npz", small_runtime()), batch)


def test_run_input_from_a_npz_is_checked_before_it_is_decompressed(tmp_path, monkeypatch):
    from cnncalc.errors import RuntimeInputError
    from cnncalc.runtime import read_input

    np.savez_compressed(tmp_path / "nhwc.npz", x=np.zeros((2, 8, 8, 3), np.float32))
    monkeypatch.setattr(np, "load", lambda *args, **kwargs: pytest.fail("the data was read before the check"))
    with pytest.raises(RuntimeInputError, match=r"shape \(2, 8, 8, 3\)") as info:
        read_input(tmp_path / "nhwc.npz", small_runtime())
    assert "transpose(0, 3, 1, 2)" in (info.value.hint or "")  # the NHWC hint, as for a .npy


def test_run_input_from_a_npz_without_exactly_one_array_says_how_many(tmp_path):
    from cnncalc.errors import RuntimeInputError
    from cnncalc.runtime import read_input

    np.savez(tmp_path / "xy.npz", x=np.zeros((1, 3, 8, 8), np.float32), y=np.zeros(1))
    with pytest.raises(RuntimeInputError, match=r"holds 2 arrays \(x, y\), not one input batch"):
        read_input(tmp_path / "xy.npz", small_runtime())
    np.savez(tmp_path / "none.npz")  # an empty zip starts with its end record, not a member's header
    with pytest.raises(RuntimeInputError, match="holds no arrays"):
        read_input(tmp_path / "none.npz", small_runtime())


def test_cli_run_with_a_one_array_npz(tmp_path):
    np.savez(tmp_path / "z.npz", np.ones((3, 3, 8, 8), np.float32))
    result = runner.invoke(app, ["run", "8x8x3|ReLU", "-i", str(tmp_path / "z.npz"), "-f", "json"])
    assert result.exit_code == 0, result.output
    assert '"batch": 3' in result.output  # the batch is the array's, not --batch's default of 1


def test_a_mistyped_data_path_is_a_missing_file(tmp_path):
    from cnncalc.spec import parse
    from cnncalc.train import load_data

    (tmp_path / "train.npz").write_bytes(b"")
    with pytest.raises(CnnCalcError) as info:  # was "unknown data", as if it were a data set's name
        load_data(str(tmp_path / "train.nzp"), parse("8x8x1|FC(2)"))
    assert "does not exist" in info.value.message and f"did you mean {tmp_path / 'train.npz'}?" in info.value.hint
