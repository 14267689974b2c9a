"""Output-path checks shared by every command that writes (replay, cascade, population, sweep,
report): run before any work, so a bad path fails in a second with one line (exit 2) instead of
after the whole simulation, and nothing is half-written.

The rule is the same everywhere: an output folder may be created, but only inside a folder that
exists (an output path in a missing folder is a mistake, not a request to build a tree); an output
file goes into an existing folder and must not be a folder itself.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from backtest.errors import UserError


def _parent(p: Path) -> Path:
    return p.parent if str(p.parent) else Path(".")


def _check_parent(out: Path, option: str, error: type[Exception]) -> None:
    parent = _parent(out)
    if not parent.exists():
        raise error(f"{option} {out}: folder {parent} does not exist; create it first or choose another {option}")
    if not parent.is_dir():
        raise error(f"{option} {out}: {parent} is a file, not a folder; choose another {option}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise error(f"{option} {out}: no permission to write in {parent}; choose another {option}")


def check_out_dir(out: str | os.PathLike, *, option: str = "--out", error: type[Exception] = UserError) -> Path:
    """An output folder: an existing, writable folder, or a new one inside an existing folder
    (created later, by the writer). Raises ``error`` with one line otherwise. Creates nothing."""
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise error(f"{option} {out} exists and is not a folder; give a folder (it is created if missing) or choose another {option}")
        if not os.access(out, os.W_OK | os.X_OK):
            raise error(f"{option} {out}: no permission to write in this folder; choose another {option}")
        return out
    _check_parent(out, option, error)
    return out


@contextmanager
def no_empty_leftover(folder: str | os.PathLike) -> Iterator[Path]:
    """Around work that may create ``folder``: if it did not exist before and the work fails, its
    empty sub-folders and the folder itself (when empty) are removed again, so a refused run leaves
    nothing behind. Files are never removed: a folder with any file in it stays (a resumable
    run's history)."""
    d = Path(folder)
    existed = d.exists()
    try:
        yield d
    except BaseException:
        if not existed and d.is_dir() and not d.is_symlink():
            # bottom-up os.rmdir: it removes only empty folders, so a file written meanwhile (another
            # run on the same folder) is never deleted; any OSError leaves the rest as it is
            for root, _dirs, _files in os.walk(d, topdown=False):
                try:
                    os.rmdir(root)
                except OSError:
                    pass
        raise


def check_out_file(
    out: str | os.PathLike, *, suffix: str | None = None, option: str = "--out", error: type[Exception] = UserError
) -> Path:
    """An output file: ends in ``suffix`` (e.g. ``".parquet"``) when given, is not a folder, and
    its folder exists. Raises ``error`` with one line otherwise. Creates nothing."""
    out = Path(out)
    if suffix and out.suffix.lower() != suffix:
        raise error(f"{option} {out} must end in {suffix}; give a {suffix} file path")
    if out.is_dir():
        raise error(f"{option} {out} is a folder; give a file path{' ending in ' + suffix if suffix else ''}")
    _check_parent(out, option, error)
    if out.exists() and not os.access(out, os.W_OK):
        raise error(f"{option} {out} exists and is not writable; choose another {option}")
    return out


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's (or a folder's) contents to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """The one atomic file write: run ``write(tmp)`` on a hidden temporary file beside ``path``,
    fsync it, rename it over ``path``, fsync the folder. A reader sees the old file or the whole
    new one, never half of it, also after a crash; the temporary file is removed if anything
    fails. A full disk or a file-size limit raises ``OSError`` naming ``path`` (also when the
    writer is polars, whose own error only says "os error 28")."""
    write_atomic_group([(path, write)])


def write_atomic_group(items: list[tuple[str | os.PathLike, Callable[[Path], None]]]) -> None:
    """Write several files so that they appear together: every ``write(tmp)`` goes to its own
    temporary file first; only when all are written and fsync'd are they renamed over their
    targets, in the order given. The last file marks a whole result (a manifest such as
    ``summary.json``): an earlier one is removed just before the renames, so a crash between two
    renames never leaves an old manifest beside new files. If any write fails, every temporary
    file is removed and no target is touched."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, write in items:
            path = Path(path)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            staged.append((path, tmp))
            try:
                write(tmp)
                fsync_path(tmp)
            except OSError as e:
                raise OSError(e.errno, e.strerror or str(e), str(path)) from None
            except Exception as e:  # polars/pyarrow report I/O errors as their own types
                err = _os_error_in(e, path)
                if err is None:
                    raise
                raise err from None
        if len(staged) > 1:  # the last file marks a whole group: never an old one beside new files
            staged[-1][0].unlink(missing_ok=True)
        for path, tmp in staged:
            os.replace(tmp, path)
        for folder in {_parent(p) for p, _ in staged}:
            try:  # make the renames durable (not every file system lets a folder be fsync'd)
                fsync_path(folder)
            except OSError:
                pass
    finally:
        for _path, tmp in staged:
            tmp.unlink(missing_ok=True)


def _os_error_in(e: Exception, path: Path) -> OSError | None:
    """The operating-system error inside a library's exception (``... (os error 28)``), as an
    ``OSError`` naming ``path``; None if it is not one."""
    import re

    m = re.search(r"(?:os error|errno)\s*(\d+)", str(e), re.IGNORECASE)
    if not m:
        return None
    code = int(m.group(1))
    return OSError(code, os.strerror(code), str(path))
