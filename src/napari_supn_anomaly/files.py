"""The files a person names: inputs that can be read without hanging, outputs checked before any
work starts and written so that nothing is lost.

* An input must be a regular file: a named pipe (FIFO) or a device would block a reader forever.
* An output is checked before the work that produces it (its folder exists and takes a file, it is
  not one of the inputs, an existing file is replaced only when the person said so), so a failure
  never comes after minutes of training or detection.
* Outputs are written under a temporary name in the same folder and renamed when all of them are
  complete: a file under its final name is always whole, and a full disk leaves nothing behind.
"""
from __future__ import annotations

import contextlib
import errno
import os
import stat
import uuid
from pathlib import Path
from typing import Iterator, Sequence

from .errors import InputError, OutputError


def check_input_file(path: str | Path, what: str = "file") -> Path:
    """``path`` as a Path if it is an existing regular file, checked without opening it; InputError
    otherwise. ``what`` names it in messages ("image", "model file")."""
    path = Path(path).expanduser()
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise InputError(f"cannot read the {what} {path}: {_reason(exc)}") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{path} is a folder; give the {what} itself")
    if not stat.S_ISREG(mode):
        raise InputError(f"{path.name} is not a regular file (it is a pipe or a device); give the {what} as a "
                         "file on disk")
    return path


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _existing_ancestor(path: Path) -> Path:
    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def _probe_writable(folder: Path, option: str) -> None:
    """Create and remove an empty file in ``folder``: the only test that a write will succeed
    (permissions, a read-only file system, /proc, root's exemption from permission bits)."""
    probe = folder / f".supn-anomaly-probe-{uuid.uuid4().hex}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise OutputError(f"{option}: cannot write in {folder} ({_reason(exc)}); choose another folder") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def _refuse_inputs(path: Path, inputs: Sequence[str | Path], option: str) -> None:
    for kept in inputs:
        if _same_file(path, kept):
            raise InputError(f"{option} would write {path}, which is the input {Path(kept).name}; an input is "
                             "never replaced: give the output another name or folder")


def check_output_file(path: str | Path, *, option: str = "--out", overwrite: bool = False,
                      inputs: Sequence[str | Path] = ()) -> Path:
    """Check, before any work, that ``path`` can be written as a new file.

    An existing file is refused unless ``overwrite``; any of ``inputs`` (the images, the base model
    of a fine-tuning) is refused even with ``overwrite``.
    """
    path = Path(path).expanduser()
    _refuse_inputs(path, inputs, option)
    if path.is_dir():
        raise InputError(f"{option} {path} is a folder; give a file name")
    if path.exists() or path.is_symlink():
        if not path.is_file():
            raise InputError(f"{option} {path} is not a regular file; give a new file name")
        if not overwrite:
            raise InputError(f"{option} {path} already exists; give a new name, or add --overwrite to replace it")
    folder = path.parent
    if not folder.exists():
        raise InputError(f"the folder for {option} does not exist: {folder}")
    if not folder.is_dir():
        raise InputError(f"{option}: {folder} is not a folder")
    _probe_writable(folder, option)
    return path


def check_output_folder(folder: str | Path, names: Sequence[str] = (), *, option: str = "--out",
                        inputs: Sequence[str | Path] = ()) -> Path:
    """Check, before any work, that the files ``names`` can be written in ``folder`` (created when
    missing). Results already there under those names are replaced; an input never is."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{option} {folder} is a file, not a folder; give a folder for the results")
    existing = _existing_ancestor(folder)
    if not existing.is_dir():
        raise InputError(f"{option} {folder}: {existing} is a file, not a folder")
    for name in names:
        target = folder / name
        _refuse_inputs(target, inputs, option)
        if target.is_dir():
            raise InputError(f"{option}: {target} is a folder where a result file goes; move it or choose "
                             "another folder")
    _probe_writable(existing, option)
    return folder


def _disk_full(exc: OSError, temps: Sequence[Path]) -> bool:
    """ENOSPC; or a short write without an error number (numpy's ``tofile`` reports one so) after
    which the file system, asked again with a write of its own, answers ENOSPC."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if exc.errno is not None:
        return False
    for tmp in temps:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_APPEND)
        except OSError:
            continue
        try:
            os.write(fd, bytes(1 << 16))  # more than the rest of a page: it needs room on the disk
        except OSError as again:
            return again.errno in (errno.ENOSPC, errno.EDQUOT)
        finally:
            os.close(fd)
    return False


def _reason(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return exc.strerror or type(exc).__name__


def _temporary_path(final: Path) -> Path:
    """Hidden, in the same folder (a rename there is atomic), with the final suffix (writers read it)."""
    return final.with_name(f".{final.stem}.partial-{uuid.uuid4().hex[:8]}{final.suffix}")


@contextlib.contextmanager
def atomic_outputs(paths: Sequence[str | Path]) -> Iterator[list[Path]]:
    """Temporary paths beside ``paths`` to write to; each is renamed to its final name once the
    block ends without an error. On any error every temporary file is removed, nothing appears
    under a final name, and an OSError becomes an OutputError ("disk full" when it is)."""
    finals = [Path(p) for p in paths]
    temps = []
    try:
        for folder in {p.parent for p in finals}:
            folder.mkdir(parents=True, exist_ok=True)
        temps = [_temporary_path(p) for p in finals]
        yield temps
        for tmp, final in zip(temps, finals):
            os.replace(tmp, final)
    except BaseException as exc:
        full = isinstance(exc, OSError) and _disk_full(exc, temps)  # before the space is freed
        for tmp in temps:
            with contextlib.suppress(OSError):
                tmp.unlink()
        if isinstance(exc, OSError):
            where = finals[0] if len(finals) == 1 else finals[0].parent
            if full:
                raise OutputError(f"disk full: {where} could not be written and nothing was left behind; "
                                  "free some space and run again") from None
            raise OutputError(f"{where} could not be written ({_reason(exc)}); nothing was left behind") from None
        raise
