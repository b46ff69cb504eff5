"""The files a run keeps: written so that a kill or a full disk never leaves a half-written one in place of the
last good one, and read so that a damaged one is one line naming it, never a traceback.

Users keep weeks of results in these files (studies, checkpoints, outputs), so the rules are the same
everywhere:

- A file is replaced whole or not at all (``replacing``, ``write_text``): the new content goes to a temporary
  file beside it, is flushed to the disk (``fsync``) and renamed over the old one, which POSIX makes atomic. A
  kill leaves the previous file and a stray temporary one; a full disk (``ENOSPC``) or any other write error
  removes the temporary file and raises ``StateError``, the previous file untouched.
- A file that cannot be read (not there as a file, not text, not JSON, not a checkpoint) raises ``StateError``
  naming the file, what is wrong and the way out; it is never overwritten or deleted to "repair" it.
- An append-only record (one JSON object a line) is appended with ``fsync``; a last line cut by a kill is what
  its reader skips (``json_lines``), any other bad line is an error with its number.

``StateError`` is a ``ValueError`` so the command line prints it as one line (``nas: error: ...``).
"""
from __future__ import annotations

import errno
import json
import os
import pickle
import re
import secrets
import struct
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

RESTORE = "restore it from a backup, or move it aside to start over"
# what torch.load raises for a file that is missing, a folder, empty, truncated, damaged or not a checkpoint
UNREADABLE = (OSError, EOFError, pickle.UnpicklingError, RuntimeError, ValueError, KeyError, TypeError,
              AttributeError, ImportError, IndexError, struct.error)


class StateError(ValueError):
    """A file a run keeps that cannot be read or written; the message names it, what is wrong and the way out."""


def why(exc: BaseException) -> str:
    """The first line of an error, short enough for a one-line message."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text[:200]


# the way out of an operating system's refusal, by its cause (for writes that failed and for any error left over)
WAYS_OUT = {errno.ENOSPC: "free some space and run the same command again (finished work is kept)",
            errno.EDQUOT: "free some space and run the same command again (finished work is kept)",
            errno.EACCES: "check its permissions", errno.EPERM: "check its permissions",
            errno.EROFS: "the file system is read-only: choose a writable folder",
            errno.EISDIR: "a folder is where a file is expected: move it aside",
            errno.ENOTDIR: "a file is where a folder is expected: move it aside",
            errno.EEXIST: "something is in the way: move it aside or choose another path",
            errno.ENOENT: "it is not there"}
OTHERWISE = "fix that and run the same command again"


def write_failed(path: Path | str, exc: OSError) -> StateError:
    """The one line for a write that failed, by its cause."""
    way = WAYS_OUT.get(exc.errno, OTHERWISE)
    return StateError(f"cannot write {path} ({why(exc)}); the previous {Path(path).name}, if any, is kept: {way}")


def os_error_line(exc: OSError) -> str:
    """An operating-system error nothing above caught (a folder in the way, a full disk, no permission), as one
    line naming the file and the way out."""
    where = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 else "") if exc.filename else "a file"
    return f"{where}: {why(exc)}; {WAYS_OUT.get(exc.errno, OTHERWISE)}"


@contextmanager
def replacing(path: Path | str) -> Iterator[Path]:
    """A temporary path beside ``path`` to write the new content to; when the block ends without error it is
    flushed to the disk and renamed over ``path``. On any error it is removed and ``path`` left as it was.

    The temporary name keeps the suffix, so writers that choose a format by it (``savefig``, ``np.savez``) work.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(3)}.partial{path.suffix}")
    try:
        yield tmp
        _fsync(tmp)
        tmp.replace(path)
        _fsync_folder(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_failed(path, exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path | str, text: str) -> None:
    """Replace ``path`` with ``text``, whole or not at all (see ``replacing``)."""
    with replacing(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path | str, data: Any, **dumps: Any) -> None:
    write_text(path, json.dumps(data, **{"indent": 2, **dumps}) + "\n")


def append_line(path: Path | str, line: str) -> None:
    """Append one line and flush it to the disk: a kill cuts at most this line, which readers skip."""
    try:
        with open(path, "a") as handle:
            handle.write(line.rstrip("\n") + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise write_failed(path, exc) from None


def read_text(path: Path | str, what: str, way_out: str = RESTORE) -> str:
    """The text of ``path`` (a ``what``), or a one-line ``StateError``: missing, a folder, unreadable, not text."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise StateError(f"{path} is not a {what} (not UTF-8 text; damaged or another kind of file): {way_out}") \
            from None
    except OSError as exc:
        raise StateError(f"cannot read {what} {path} ({why(exc)}): {way_out}") from None


def read_json(path: Path | str, what: str, way_out: str = RESTORE) -> Any:
    """``path`` parsed as JSON, or a one-line ``StateError`` naming the file and where it stops being JSON."""
    text = read_text(path, what, way_out)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateError(f"{path} is not a {what} (damaged: not JSON at line {exc.lineno}, column {exc.colno}): "
                         f"{way_out}") from None


def json_lines(path: Path | str, what: str, way_out: str = RESTORE) -> tuple[list[Any], bool]:
    """The records of an append-only file of JSON lines (``what`` names one: "proving-ground record"), and whether
    its last line was cut (a kill or a full disk while appending: that record is not there, and its work is done
    again). Another bad line is a ``StateError`` with its number: what followed it cannot be trusted."""
    path = Path(path)
    text = read_text(path, what, way_out)
    lines = text.split("\n")
    records, cut = [], False
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):  # no newline after it: the last append was cut
                cut = True
                continue
            raise StateError(f"{path}, line {number}: not a {what} (damaged); {way_out}") from None
    return records, cut


def load_torch(path: Path | str, what: str, way_out: str = RESTORE) -> Any:
    """``torch.load`` of ``path`` on the CPU with ``weights_only=True``: tensors, numbers, strings and containers,
    plus numpy arrays (a checkpoint's random streams hold one), and never code. A file that names anything else
    (a pickle that would run code when loaded) is refused; one that is missing, a folder, truncated, damaged or
    not a checkpoint is a one-line ``StateError`` too. Checkpoints, supernets and shared folders
    (``--evaluator supernet:DIR``) are all read this way."""
    import torch

    path = Path(path)
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except UNREADABLE as exc:
        raise unreadable_checkpoint(path, exc, what, way_out) from None


def _numpy_globals() -> list[Any]:
    """What a numpy array needs to be rebuilt by ``weights_only`` loading: its constructor and dtypes, no code."""
    import numpy as np
    import numpy.dtypes

    return [np._core.multiarray._reconstruct, np.ndarray, np.dtype,  # noqa: SLF001 (numpy's own pickle path)
            *(getattr(numpy.dtypes, name) for name in dir(numpy.dtypes) if name.endswith("DType"))]


def unreadable_checkpoint(path: Path | str, exc: BaseException, what: str, way_out: str = RESTORE) -> StateError:
    """The one line for a checkpoint ``torch.load`` could not read, whoever called it."""
    path = Path(path)
    code = re.search(r"GLOBAL (\S+) was not an allowed global", str(exc))
    if code:
        return StateError(f"{path} is refused: loading it would run code it names ({code.group(1)}), which a "
                          f"{what} of plain weights never needs; if you trust its source, convert it yourself "
                          "with torch.load(weights_only=False) and torch.save of its tensors")
    reason = "empty" if path.is_file() and path.stat().st_size == 0 else why(exc)
    if any(sign in reason for sign in ("central directory", "truncated", "Weights only load failed",
                                       "invalid load key", "PytorchStreamReader")):
        reason = "truncated, damaged or not a checkpoint"
    return StateError(f"{path} is not a readable {what} ({reason}): {way_out}")


def output_folder(path: Path | str, flag: str = "--out") -> Path:
    """The folder a run writes into, created if missing; a file there (or on its way) is a one-line error."""
    path = Path(path)
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            raise StateError(f"{flag} {path}: {part} is a file, not a folder; choose another {flag} "
                             "(nothing was written)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(f"{flag} {path}: cannot create the folder ({why(exc)}); choose another {flag}") from None
    return path


def _fsync(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_folder(folder: Path) -> None:
    """The rename itself reaches the disk (where the system allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
