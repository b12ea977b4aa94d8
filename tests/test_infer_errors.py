"""Bad input and bad luck: unreadable rasters, wrong bands, full or read-only disks, kills."""

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from infer_helpers import make_predictor, random_image, write_geotiff
from PIL import Image

from rsseg.errors import RsSegError
from rsseg.infer import ScenesFailed, predict_file, predict_files, read_image

TESTS = Path(__file__).resolve().parent


def test_unreadable_and_truncated_inputs(tmp_path):
    predictor = make_predictor()
    bogus = tmp_path / "notes.tif"
    bogus.write_text("this is not an image\n" * 10)
    with pytest.raises(RsSegError, match="notes.tif.*not a readable image"):
        predict_file(predictor, bogus, tmp_path / "out")
    good = write_geotiff(tmp_path / "good.tif", random_image(300, 300))
    data = good.read_bytes()
    for name, size in (("head.tif", 5000), ("tail.tif", int(len(data) * 0.7))):
        (tmp_path / name).write_bytes(data[:size])
        with pytest.raises(RsSegError, match=f"{name}.*not a readable image"):
            predict_file(predictor, tmp_path / name, tmp_path / "out")
    with pytest.raises(RsSegError, match="head.tif.*not a readable image"):
        read_image(tmp_path / "head.tif")
    with pytest.raises(RsSegError, match="input not found: .*missing.tif"):
        predict_file(predictor, tmp_path / "missing.tif", tmp_path / "out")
    assert not list((tmp_path / "out").glob("tail_*"))  # nothing left of the failed scene


def test_band_count_mismatch_names_the_file(tmp_path):
    src = write_geotiff(tmp_path / "two.tif", random_image(40, 40, bands=2))
    with pytest.raises(RsSegError, match="two.tif has 2 band.*expects 3"):
        predict_file(make_predictor(), src, tmp_path / "o")
    with pytest.raises(RsSegError, match="two.tif has 2 band.*reads bands \\[1, 5\\]"):
        predict_file(make_predictor(mean=(1.0, 1.0), bands=[0, 4]), src, tmp_path / "o")


def test_one_bad_scene_does_not_stop_the_others(tmp_path):
    a = write_geotiff(tmp_path / "a.tif", random_image(50, 60))
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00garbage")
    two = write_geotiff(tmp_path / "two.tif", random_image(40, 40, bands=2))
    c = write_geotiff(tmp_path / "c.tif", random_image(30, 70))
    predictor = make_predictor(window=64, keep=48)
    with pytest.raises(ScenesFailed, match="2 of 4 scenes failed") as info:
        predict_files(predictor, [a, bad, two, c], tmp_path / "o", show_progress=False)
    assert "bad.tif" in str(info.value) and "two.tif has 2 band" in str(info.value)
    assert [r.ok for r in info.value.results] == [True, False, False, True]
    assert (tmp_path / "o" / "a_classes.tif").exists() and (tmp_path / "o" / "c_areas.json").exists()
    results = predict_files(predictor, [a, bad], tmp_path / "o2", show_progress=False, raise_on_error=False)
    assert results[0].ok and "not a readable image" in results[1].error


def test_inputs_are_checked_before_any_work(tmp_path):
    predictor = make_predictor(window=64, keep=48)
    a = tmp_path / "a.png"
    Image.fromarray(random_image(40, 50).transpose(1, 2, 0)).save(a)
    out = tmp_path / "out"
    with pytest.raises(RsSegError, match="nope.png"):
        predict_files(predictor, [a, tmp_path / "nope.png"], out, show_progress=False)
    assert not out.exists()
    (tmp_path / "sub").mkdir()
    b = tmp_path / "sub" / "a.jpg"
    Image.fromarray(random_image(40, 50).transpose(1, 2, 0)).save(b)
    with pytest.raises(RsSegError, match="overwrite"):
        predict_files(predictor, [a, b], out, show_progress=False)
    with pytest.raises(RsSegError, match="^--window 200 --keep 224: invalid border correction window 200 / keep 224"):
        predict_files(make_predictor(), [a], out, show_progress=False, window=200, keep=224)
    with pytest.raises(RsSegError, match="^unknown prediction option 'windw'; did you mean 'window'"):
        predict_files(make_predictor(), [a], out, show_progress=False, windw=200)
    assert not out.exists()


def test_unwritable_out_dir(tmp_path):
    a = tmp_path / "a.png"
    Image.fromarray(random_image(20, 20).transpose(1, 2, 0)).save(a)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RsSegError, match="cannot create output directory .*file"):
        predict_file(make_predictor(), a, blocker / "out")


def test_read_only_output(tmp_path, monkeypatch):
    src = write_geotiff(tmp_path / "s.tif", random_image(40, 40))
    out = tmp_path / "ro"
    out.mkdir()
    if os.geteuid() != 0:
        out.chmod(0o555)
        with pytest.raises(RsSegError, match="not writable: .*ro"):
            predict_file(make_predictor(), src, out)
        return
    import rsseg.io  # root writes anywhere: make the file system say it is read-only

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(rsseg.io.tempfile, "mkstemp", read_only)
    with pytest.raises(RsSegError, match="cannot write .*s_classes.tif: Read-only file system"):
        predict_file(make_predictor(), src, out)


def _run_child(code: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_full_disk_is_a_clear_error(tmp_path):
    """A file-size limit makes every write past 64 KiB fail, as a full disk would."""
    src = write_geotiff(tmp_path / "noise.tif", np.random.default_rng(0).integers(0, 255, (3, 600, 600), np.uint8))
    out = tmp_path / "o"
    out.mkdir()
    child = _run_child(f"""
        import resource, signal
        from infer_helpers import make_predictor
        from rsseg.errors import RsSegError
        from rsseg.infer import predict_file
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, resource.RLIM_INFINITY))
        try:
            predict_file(make_predictor(window=64, keep=48, batch_size=16), {str(src)!r}, {str(out)!r},
                         probabilities=True)
        except RsSegError as exc:
            print("ERROR", exc)
    """)
    stdout, stderr = child.communicate(timeout=120)
    assert "ERROR cannot write" in stdout and "noise_" in stdout, stdout + stderr
    assert "Write error" in stdout and "disk full?" in stdout
    assert list(out.iterdir()) == []  # no partial output, no temporary file


def test_killed_run_leaves_no_output_and_a_rerun_completes(tmp_path):
    src = write_geotiff(tmp_path / "k.tif", random_image(600, 200))
    out = tmp_path / "o"
    child = _run_child(f"""
        import time, torch
        from infer_helpers import make_predictor
        from rsseg.infer import predict_file
        p = make_predictor(window=64, keep=48)
        inner = p.model.forward
        p.model.forward = lambda x: (time.sleep(0.3), inner(x))[1]
        predict_file(p, {str(src)!r}, {str(out)!r}, probabilities=True,
                     progress=lambda done: print("progress", done, flush=True))
    """)
    try:
        assert child.stdout.readline().startswith("progress")  # mid-way: first strip done
        time.sleep(0.5)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        child.kill()
        child.communicate()
    names = [p.name for p in out.iterdir()]
    assert names and all(n.startswith(".") for n in names), names  # only temporary files
    paths = predict_file(make_predictor(window=64, keep=48), src, out, probabilities=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths.values())
