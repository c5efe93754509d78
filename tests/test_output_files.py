"""Where -o writes: through a symbolic link to its target, into a device, pipe or stream as it is, and a
clear refusal when a folder on the way is a file. Never the real /dev/null or /dev/stdout: run as root, a
regression would rename a regular file over them."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import onnx
import pytest
from typer.testing import CliRunner

from cnncalc.cli import app
from cnncalc.errors import CnnCalcError
from cnncalc.fileio import would_overwrite, write_all_atomic, write_atomic
from cnncalc.onnx_io import export_targets

runner = CliRunner()
CHAIN = "8x8x1|FC(2)"
needs_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mknod needs root")
posix_only = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")


def open_reader(fifo: Path) -> int:
    """A reader on the FIFO that never blocks, so a writer can open it and a test never hangs."""
    return os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)


def read_available(fd: int) -> bytes:
    """What a writer put into the FIFO so far; b"" when nothing (a writer-less FIFO reads as its end)."""
    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:  # a writer is connected but wrote nothing
        return b""


# ---- symbolic links ---------------------------------------------------------------------------------
def test_a_symlink_is_followed_and_stays_a_link(tmp_path):
    (tmp_path / "data").mkdir()
    real = tmp_path / "data" / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(Path("data") / "real.json")  # relative, as `ln -s` usually makes them
    with pytest.raises(CnnCalcError, match="already exists"):
        write_atomic(link, "new", force=False)  # the target holds data: --force still needed
    write_atomic(link, "new")
    assert link.is_symlink() and os.readlink(link) == os.path.join("data", "real.json")
    assert real.read_text() == "new"
    # the temporary file went beside the target (renamed there), and none is left in either folder
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["data", "link.json", "real.json"]


def test_a_dangling_symlink_creates_its_target_and_a_loop_is_refused(tmp_path):
    link = tmp_path / "out.json"
    link.symlink_to(tmp_path / "made.json")
    write_atomic(link, "made", force=False)  # nothing existed: no --force needed
    assert link.is_symlink() and (tmp_path / "made.json").read_text() == "made"
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(CnnCalcError, match="loop"):
        write_atomic(tmp_path / "a", "x")
    assert (tmp_path / "a").is_symlink() and (tmp_path / "b").is_symlink()


def test_cli_output_through_a_symlink_keeps_the_link(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    (tmp_path / "link.json").symlink_to(real)
    result = runner.invoke(app, ["analyze", CHAIN, "-o", str(tmp_path / "link.json")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "link.json").is_symlink() and real.read_text().startswith("{")  # .json: the JSON format


# ---- devices, pipes and streams -------------------------------------------------------------------
@posix_only
def test_a_fifo_is_written_through_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = open_reader(fifo)
    try:
        write_atomic(fifo, b"through the pipe", force=False)  # a pipe holds nothing to lose: no --force
        assert read_available(reader) == b"through the pipe"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]  # no temporary file was made for it


@posix_only
def test_a_pipe_in_a_set_gets_its_bytes_only_once_every_file_is_staged(tmp_path, monkeypatch):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = open_reader(fifo)
    try:
        write_all_atomic({fifo: "to the pipe", tmp_path / "a.txt": "a file"})
        assert read_available(reader) == b"to the pipe" and (tmp_path / "a.txt").read_text() == "a file"
        real = tempfile.mkstemp

        def disk_full(*args, **kwargs):
            if kwargs.get("prefix", "").startswith(".b.txt"):
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(*args, **kwargs)

        monkeypatch.setattr(tempfile, "mkstemp", disk_full)
        with pytest.raises(CnnCalcError, match="No space left"):
            write_all_atomic({fifo: "not this", tmp_path / "b.txt": "b"})
        assert read_available(reader) == b""  # staging b.txt failed before anything went into the pipe
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def make_device(path, kind: int, device: int, try_writing: bool = False) -> None:
    """A device file of our own, or a skip where the system does not allow one (no CAP_MKNOD, a nodev mount)."""
    try:
        os.mknod(path, kind | 0o666, device)
        if try_writing:
            with open(path, "wb") as handle:
                handle.write(b"")
    except OSError as error:
        pytest.skip(f"cannot make or open a device file here: {error}")


@needs_root
def test_a_character_device_is_written_through_without_force(tmp_path):
    device = tmp_path / "null"
    make_device(device, stat.S_IFCHR, os.makedev(1, 3), try_writing=True)  # a /dev/null of our own
    write_atomic(device, "discarded", force=False)
    result = runner.invoke(app, ["analyze", CHAIN, "-f", "json", "-o", str(device)])
    assert result.exit_code == 0, result.output
    assert stat.S_ISCHR(os.lstat(device).st_mode) and os.major(os.lstat(device).st_rdev) == 1
    assert not would_overwrite(device)


@needs_root
def test_a_block_device_is_refused(tmp_path):
    disk = tmp_path / "disk"
    make_device(disk, stat.S_IFBLK, os.makedev(7, 0))  # a loop device's numbers; never opened
    with pytest.raises(CnnCalcError, match="block device"):
        write_atomic(disk, "x")
    assert stat.S_ISBLK(os.lstat(disk).st_mode)


@pytest.mark.skipif(not os.path.isdir("/dev/fd") or not os.path.isdir("/proc/self/fd"), reason="needs Linux's /proc")
def test_stdout_redirected_to_a_file_writes_into_that_file(tmp_path):
    # `cnncalc ... -o /dev/stdout > out.json`: /dev/stdout -> /proc/self/fd/1 -> out.json. Renaming over
    # out.json would swap its inode under the shell's redirection; the bytes must go through the stream.
    # /dev/fd/1 takes the same way through /proc; /dev/stdout itself is not used: a regression run as root
    # would rename a file over the system's /dev/stdout link (a rename into /proc/self/fd just fails)
    out = tmp_path / "out.json"
    with open(out, "wb") as handle:
        inode = os.fstat(handle.fileno()).st_ino
        result = subprocess.run([sys.executable, "-m", "cnncalc", "analyze", CHAIN, "-f", "json", "-o", "/dev/fd/1"],
                                stdout=handle, stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "already exists" not in result.stderr and "wrote /dev/fd/1" in result.stderr
    assert os.stat(out).st_ino == inode and out.read_text().startswith("{")


@posix_only
def test_export_to_a_pipe_needs_no_force(tmp_path):
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    regular = tmp_path / "old.onnx"
    regular.write_bytes(b"keep")
    assert not would_overwrite(fifo) and would_overwrite(regular) and not would_overwrite(tmp_path / "new.onnx")
    assert export_targets(fifo, ["net"]) == [fifo]
    reader = open_reader(fifo)
    try:
        result = runner.invoke(app, ["export", CHAIN, "-o", str(fifo)])
        assert result.exit_code == 0, result.output
        model = onnx.load_model_from_string(read_available(reader))
    finally:
        os.close(reader)
    # FC(2) on 8x8x1 is a Gemm with transB: W is 2 outputs x 64 inputs, B is 2
    assert [list(t.dims) for t in model.graph.initializer] == [[2, 64], [2]]


# ---- folders ------------------------------------------------------------------------------------------
def test_a_folder_that_is_a_file_is_named_as_a_file(tmp_path):
    (tmp_path / "file.json").write_text("keep")
    for target in (tmp_path / "file.json" / "x.json", tmp_path / "file.json" / "a" / "b" / "x.json"):
        with pytest.raises(CnnCalcError) as info:
            write_atomic(target, "x")
        assert f"{tmp_path / 'file.json'} is a file, not a folder" in info.value.message
        assert "mkdir" not in (info.value.hint or "")  # mkdir -p would fail on the file
    result = runner.invoke(app, ["analyze", CHAIN, "-o", str(tmp_path / "file.json" / "x.json")])
    assert result.exit_code == 1 and "is a file, not a folder" in result.output and "Traceback" not in result.output
    assert (tmp_path / "file.json").read_text() == "keep"


def test_a_markdown_report_through_a_symlink_puts_its_images_beside_the_target(tmp_path):
    # the images went beside the link, so the document's relative links broke
    pytest.importorskip("matplotlib")
    (tmp_path / "real").mkdir()
    (tmp_path / "links").mkdir()
    link = tmp_path / "links" / "r.md"
    link.symlink_to("../real/r.md")
    spec = str(Path(__file__).resolve().parents[1] / "specs" / "lenet5.yaml")
    result = runner.invoke(app, ["report", spec, "-o", str(link)])
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and (tmp_path / "real" / "r.md").is_file()
    assert list((tmp_path / "real" / "r_files").glob("*.svg")) and not (tmp_path / "links" / "r_files").exists()


def test_a_folder_as_output_names_a_file_inside_it(tmp_path):
    # analyze -o FOLDER: the hint used to offer 'out/model.onnx', an export's name, to every command
    result = CliRunner().invoke(app, ["analyze", "8x8x3|ReLU", "-o", str(tmp_path)])
    assert result.exit_code == 1
    assert "is a directory" in result.output and str(tmp_path / "NAME") in result.output.replace("\n", "")
    assert "model.onnx" not in result.output


@pytest.mark.parametrize("variants", [False, True])
def test_export_to_a_folder_says_it_is_a_folder_not_that_force_would_overwrite_it(tmp_path, variants):
    # export -o FOLDER said 'FOLDER already exists, pass --force to overwrite': --force then said it is a directory
    folder = tmp_path / "out"
    folder.mkdir()
    if variants:  # <stem>-<variant>.onnx beside -o: the folder named by -o itself is not a target
        (tmp_path / "out-a.onnx").mkdir()
        spec = tmp_path / "two.yaml"
        spec.write_text("input: 8x8x3\nvariants:\n  a: ReLU\n  b: GAP\n")
        args = ["export", str(spec), "-o", str(folder)]
        named = tmp_path / "out-a.onnx"
    else:
        args = ["export", "8x8x3|ReLU", "-o", str(folder)]
        named = folder
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    text = result.output.replace("\n", "")
    assert f"{named} is a directory" in text and str(named / "NAME") in text
    assert "--force" not in text
