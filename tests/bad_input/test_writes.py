"""A failed write never replaces a good file; concurrent runs never delete each other's work.

The full disk is a real one where this machine allows it (a 2 MB tmpfs; root only), else an
ENOSPC injected where the helper syncs the temporary file.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from infer_helpers import random_image, write_geotiff
from typer.testing import CliRunner

import rsseg.io
from rsseg.cli import app, err_console

pytestmark = pytest.mark.usefixtures("one_torch_thread")
runner = CliRunner()
OUTPUTS = ("classes.tif", "color.png", "blend.png", "areas.json")
GIS_OUTPUTS = ("classes.qml", "item.json")  # written after the streamed outputs (rsseg.infer.gis_outputs)


def plain(text: str) -> str:
    return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", text).split())


def predict(ckpt: Path, scene: Path, out: Path):
    return runner.invoke(app, ["predict", str(ckpt), str(scene), "--out", str(out), "--threads", "1"])


def snapshot(out: Path, stem: str) -> dict[str, bytes]:
    return {name: (out / f"{stem}_{name}").read_bytes() for name in OUTPUTS}


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture(autouse=True)
def wide_errors(monkeypatch):
    """One line however long the tmp path (rich folds long words at 80 columns)."""
    monkeypatch.setattr(err_console, "_width", 1000)


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    return write_geotiff(tmp_path / "scene.tif", random_image(200, 232))


@pytest.fixture
def small_fs(tmp_path: Path):
    """A 2 MB tmpfs (None where mounting is not permitted); unmounted afterwards."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                             capture_output=True).returncode == 0
    try:
        yield mnt if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(folder: Path) -> None:
    with open(folder / "filler", "wb", buffering=0) as f:  # unbuffered: close() has nothing left to flush
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_full_disk_keeps_the_previous_outputs(trained, scene, small_fs, tmp_path, monkeypatch):
    out = (small_fs or tmp_path) / "out"
    first = predict(trained, scene, out)
    assert first.exit_code == 0, first.output
    before = snapshot(out, "scene")
    if small_fs is not None:
        fill(small_fs)
    else:  # no mount here: the disk fills up while the class map is synced
        sync = rsseg.io._sync

        def full(tmp: Path, min_size: int) -> None:
            if "_classes.tif" in tmp.name:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            sync(tmp, min_size)

        monkeypatch.setattr(rsseg.io, "_sync", full)
    again = predict(trained, scene, out)
    msg = plain(again.output)
    assert again.exit_code == 2, again.output
    assert f"cannot write {out / 'scene_classes.tif'}: No space left on device" in msg, msg
    assert "Traceback" not in again.output
    assert snapshot(out, "scene") == before  # byte-identical, not a 0-byte map
    assert temporaries(out) == []


def _start_blocked_predict(ckpt: Path, scene: Path, out: Path, go: Path) -> subprocess.Popen:
    """A ``predict`` whose GeoTIFF writer waits for ``go`` to exist: it stays mid-write."""
    code = f"""
        import time
        from pathlib import Path
        import rsseg.infer.writers as w
        inner = w.RowWriter.write
        def write(self, rows):
            t = time.monotonic()
            while not Path({str(go)!r}).exists() and time.monotonic() - t < 120:
                time.sleep(0.05)
            inner(self, rows)
        w.RowWriter.write = write
        from rsseg.cli import app, err_console
        app(["predict", {str(ckpt)!r}, {str(scene)!r}, "--out", {str(out)!r}, "--threads", "1"])
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "400"}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_two_predicts_into_one_folder_both_complete(trained, scene, tmp_path):
    """Run B starts and finishes while run A is writing the same scene into the same folder:
    B must not take A's temporary files for a killed run's leftovers."""
    out, go = tmp_path / "out", tmp_path / "go"
    a = _start_blocked_predict(trained, scene, out, go)
    try:
        deadline = time.monotonic() + 120
        while not (out.is_dir() and temporaries(out)) and a.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert temporaries(out), "run A never started writing"
        mine = temporaries(out)
        b = predict(trained, scene, out)
        assert b.exit_code == 0, b.output
        assert temporaries(out) == mine  # A's files are still there
        go.touch()
        output, _ = a.communicate(timeout=120)
    finally:
        a.kill()
    assert a.returncode == 0, output
    assert temporaries(out) == []
    assert sorted(p.name for p in out.iterdir()) == sorted(f"scene_{n}" for n in (*OUTPUTS, *GIS_OUTPUTS))
    import rasterio

    with rasterio.open(out / "scene_classes.tif") as ds:
        assert ds.shape == (200, 232) and (ds.read(1) != 255).all()


def test_only_dead_runs_leftovers_are_removed(trained, scene, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    host = rsseg.io._host()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        live = out / f".scene_classes.tif.{host}-{sleeper.pid}-abcd1234.tif"
        elsewhere = out / ".scene_classes.tif.otherhost-1-abcd1234.tif"
        unknown = out / ".scene_classes.tif.tmp"
        killed = out / f".scene_classes.tif.{host}-{dead.pid}-abcd1234.tif"
        for p in (live, elsewhere, unknown, killed):
            p.write_bytes(b"another run's tiles")
        result = predict(trained, scene, out)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert result.exit_code == 0, result.output
    assert not killed.exists()  # its process is gone: a killed run's leftover
    for p in (live, elsewhere, unknown):
        assert p.read_bytes() == b"another run's tiles", p
    assert temporaries(out) == sorted(p.name for p in (live, elsewhere, unknown))


def test_write_error_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    """The helper itself: a writer that fails half-way, and one that writes nothing."""
    target = tmp_path / "metrics.json"
    rsseg.io.atomic_write_text(target, '{"miou": 0.5}\n')

    def half(tmp: Path) -> None:
        tmp.write_text('{"mi')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    for body in (half, lambda tmp: None):
        with pytest.raises(rsseg.io.WriteFailed, match=f"cannot write {re.escape(str(target))}: "):
            with rsseg.io.atomic_path(target) as tmp:
                body(tmp)
        assert target.read_text() == '{"miou": 0.5}\n'
        assert temporaries(tmp_path) == []
