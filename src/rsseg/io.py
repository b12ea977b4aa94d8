"""File helpers shared by every stage: atomic writes so a crash or a full disk never leaves
half a file, nor replaces a good one.

``atomic_path`` is the one owner of the temporary-then-rename dance. Its temporaries are
named ``.NAME.HOST-PID-XXXXXXXX.SUFFIX`` so that concurrent runs writing into one folder can
tell their files apart: cleanup removes only temporaries of processes that are gone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rsseg.errors import RsSegError

MiB = 2**20


class WriteFailed(RsSegError, OSError):
    """A file could not be written completely; the old file, if any, is untouched.
    Also an ``OSError`` so that callers that handle write errors as such keep working."""


class IncompleteWrite(OSError):
    """The temporary file is not what its writer claimed to have written."""


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:32] or "host"


def _temporary(path: Path) -> Path:
    """A new, empty temporary file beside ``path`` owned by this process (host, pid, random)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_host()}-{os.getpid()}-",
                               suffix=path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
    return Path(tmp)


def _sync(path: Path, min_size: int) -> None:
    """fsync (a network or quota file system may report a full disk only now), then check size."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if size < min_size:
        raise IncompleteWrite(f"the file was left with {size} bytes (expected at least {min_size})")


def sync_tree(folder: Path) -> None:
    """fsync every file under ``folder`` (a folder written whole, then renamed into place)."""
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file() and not p.is_symlink():
            _sync(p, 0)


def _sync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be fsynced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: Path, verify: Callable[[Path], None] | None = None, min_size: int = 1) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only once the body has
    succeeded, the file is synced, holds at least ``min_size`` bytes and passes ``verify(tmp)``.

    A failed write (``OSError`` or a GDAL error) raises ``WriteFailed`` naming ``path``; the
    temporary is removed and an existing ``path`` is left as it was.
    """
    path = Path(path)
    ensure_writable_dir(path.parent)
    try:
        tmp = _temporary(path)
    except OSError as exc:
        raise write_error(path, exc) from exc
    try:
        yield tmp
        _sync(tmp, min_size)
        if verify is not None:
            verify(tmp)
        os.replace(tmp, path)
        _sync_dir(path.parent)
    except WriteFailed:
        raise
    except Exception as exc:
        if not _is_write_error(exc):
            raise
        raise write_error(path, exc) from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def atomic_write_text(path: Path, text: str) -> None:
    data = text.encode()
    with atomic_path(path, min_size=len(data)) as tmp:
        tmp.write_bytes(data)


def _is_write_error(exc: BaseException) -> bool:
    """OSError, or an error GDAL reported through rasterio (``CPLE_*``, ``RasterioError``)."""
    return isinstance(exc, OSError) or type(exc).__module__.startswith("rasterio")


def write_error(path: Path, exc: BaseException) -> WriteFailed:
    """One line naming the file, with the underlying reason (rasterio's own message is often
    just "Write failed. See previous exception") and the free space left there."""
    if isinstance(exc, WriteFailed):
        return WriteFailed(str(exc))
    reasons, e = [], exc
    while e is not None and len(reasons) < 4:
        text = (getattr(e, "strerror", None) or str(e)) if _is_write_error(e) else ""
        if text and "previous exception" not in text and text not in reasons:
            reasons.append(text)
        e = None if isinstance(e, IncompleteWrite) else e.__cause__ or e.__context__
    try:
        free = shutil.disk_usage(Path(path).parent).free / MiB
    except OSError:
        free = None
    full = getattr(exc, "errno", None) == errno.ENOSPC or (free is not None and free < 1)
    if full and not any("No space left" in r for r in reasons):
        reasons.insert(0, os.strerror(errno.ENOSPC))
    reason = " ".join(("; ".join(reasons) or str(exc) or type(exc).__name__).split())  # one line
    if free is not None and (full or not isinstance(exc, OSError) or exc.errno in (errno.EFBIG, None)):
        reason += f" ({free:.0f} MB free there)" if full else f" (disk full? {free:.0f} MB free there)"
    return WriteFailed(f"cannot write {path}: {reason}")


def close_raster(ds: Any) -> None:
    """Close a rasterio dataset open for writing and raise what GDAL reported meanwhile:
    rasterio ignores errors of GDALClose, where a full disk often shows first (the blocks
    cached until then are flushed), and a 0-byte GeoTIFF was renamed over a good one."""
    try:  # rasterio's own error recorder (the one behind "See previous exception")
        from rasterio._err import _ERROR_STACK, stack_errors
    except ImportError:  # pragma: no cover - another rasterio: the size and re-open checks remain
        ds.close()
        return
    recorder = stack_errors()
    recorder.__enter__()
    try:
        ds.close()
    finally:
        errors = list(_ERROR_STACK.get())
        recorder.__exit__(None, None, None)
    if errors:
        raise errors[-1]


def check_raster(path: Path, shape: tuple[int, int, int]) -> None:
    """The GeoTIFF opens with ``shape`` (bands, height, width) and its last tile decodes."""
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.windows import Window

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            if (ds.count, ds.height, ds.width) != tuple(shape):
                raise IncompleteWrite(f"the GeoTIFF reads back as {ds.count} x {ds.height} x {ds.width}, "
                                      f"not {shape[0]} x {shape[1]} x {shape[2]}")
            try:  # tiles are written in order: a file cut short lacks the last one
                ds.read(ds.count, window=Window(ds.width - 1, ds.height - 1, 1, 1))
            except Exception as exc:
                raise IncompleteWrite("the GeoTIFF's last tile does not read back (file cut short)") from exc


@contextlib.contextmanager
def raster_writer(tmp: Path, **profile: Any) -> Iterator[Any]:
    """``rasterio.open(tmp, "w", **profile)`` for use inside ``atomic_path``: closed with
    ``close_raster`` and checked with ``check_raster`` (the body's errors win)."""
    import rasterio

    with rasterio.open(tmp, "w", **profile) as ds:  # ``with``: GDAL's messages go to logging
        yield ds
        close_raster(ds)
    check_raster(tmp, (profile["count"], profile["height"], profile["width"]))


_TEMPORARY = re.compile(r"(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-[a-z0-9_]{8}")


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove temporaries of ``path`` left by processes of this host that no longer run (a
    killed run); never another live process's, another host's, nor unrecognised files."""
    path, removed = Path(path), []
    prefix, host = f".{path.name}.", _host()
    with contextlib.suppress(OSError):
        for p in path.parent.iterdir():
            if not p.name.startswith(prefix):
                continue
            m = _TEMPORARY.fullmatch(p.name[len(prefix):].removesuffix(path.suffix or ".tmp"))
            if m and m["host"] == host and not _alive(int(m["pid"])):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: it exists, owned by someone else
        return True
    return True


def ensure_writable_dir(path: Path) -> Path:
    """Create ``path`` if needed and check that files can be written there."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RsSegError(f"cannot create output directory {path}: {exc.strerror or exc}") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise RsSegError(f"output directory is not writable: {path}")
    return path


def check_input(path: Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise RsSegError(f"input not found: {path}")
    if not path.is_file():
        raise RsSegError(f"input is not a file: {path}")
    return path
