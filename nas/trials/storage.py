"""Where a study is kept, and how a worker rides out a database that goes away for a while.

A URL with ``://`` is an RDB (SQLite for one process; PostgreSQL or MySQL for several processes or machines);
anything else is a journal file, which several processes on machines that share its folder may append to.

A database server restarts, fails over or drops idle connections; a cluster's workers must not die of that.
Every call of the RDB storage is retried with exponential back-off while the error is a lost or refused
connection, for at most ``patience_s`` seconds; then it stops with one line that names the database. Pooled
connections are checked before use (``pool_pre_ping``), so the first call after a restart reconnects instead of
failing. Other errors (a bad value, a finished trial) are not retried.

A heartbeat cannot be written while the database is away, so right after an outage every running trial looks
stale. ``seconds_since_outage`` lets the recovery of interrupted trials wait until the workers that are alive
have beaten again, instead of failing (and training twice) trials that never stopped.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from ..files import RESTORE, StateError, append_line, output_folder, read_json, why, write_failed
from .errors import RunError

logger = logging.getLogger(__name__)

HEARTBEAT_S = 2
STALE_AFTER_S = 10
MAX_RETRIES = 3  # a trial whose process dies this often is not queued again
PATIENCE_S = 120.0  # how long a worker waits for an unreachable database before it stops
MAX_BACKOFF_S = 4.0  # below STALE_AFTER_S - HEARTBEAT_S: live workers beat again soon after the database returns
NEVER_BEATEN_AFTER_S = 60.0  # a running trial with no beat this long after its start (clocks of machines may differ)

T = TypeVar("T")


class StorageUnavailable(RunError):
    """The study's database did not answer within the patience."""


class _Outages:
    """When this process last saw the database come back (shared by its threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ended_at = 0.0
        self.ongoing = 0

    def begin(self) -> None:
        with self.lock:
            self.ongoing += 1

    def end(self) -> None:
        with self.lock:
            self.ongoing -= 1
            self.ended_at = time.time()


OUTAGES = _Outages()


def seconds_since_outage() -> float:
    """0 while this process is waiting for the database; else the time since it last came back (inf: never
    went away)."""
    if OUTAGES.ongoing:
        return 0.0
    return time.time() - OUTAGES.ended_at if OUTAGES.ended_at else float("inf")


def is_transient(exc: BaseException) -> bool:
    """A lost, refused or broken connection anywhere in the error's chain of causes.

    The whole chain, because Optuna sometimes handles the connection error itself first: ``_get_trials`` takes an
    ``OperationalError`` for SQLite's limit on variables and queries again in the same session, which then fails
    with ``PendingRollbackError`` (wrapped in ``StorageInternalError``); the lost connection is two links down."""
    from sqlalchemy import exc as sa

    return any(isinstance(error, (sa.OperationalError, sa.InterfaceError)) or
               getattr(error, "connection_invalidated", False) for error in _chain(exc))


def _chain(exc: BaseException) -> list[BaseException]:
    """The error and its causes and contexts, each once."""
    seen: dict[int, BaseException] = {}
    todo: list[BaseException | None] = [exc]
    while todo:
        error = todo.pop()
        if error is None or id(error) in seen:
            continue
        seen[id(error)] = error
        todo += [error.__cause__, error.__context__]
    return list(seen.values())


def with_retries(call: Callable[[], T], what: str, patience_s: float, insert: bool = False,
                 transient: Callable[[BaseException], bool] = is_transient) -> T:
    """``call()``, retried with back-off while the database is unreachable, for at most ``patience_s``.

    ``insert``: the call writes a row that may exist only once (a parameter, an attribute). A connection cut
    while its commit was on the wire leaves the row written but the call failed; when the retry then finds the
    row there (an integrity error), the first attempt did the work."""
    from sqlalchemy import exc as sa

    started, delay, waiting = time.monotonic(), 0.25, False
    try:
        while True:
            try:
                result = call()
            except Exception as exc:  # noqa: BLE001 (only connection errors are retried; the rest re-raised)
                if insert and waiting and isinstance(exc, sa.IntegrityError):
                    return None  # type: ignore[return-value]
                if not transient(exc):
                    raise
                reason = str(exc.__cause__ or exc).strip().splitlines()[0][:160]
                waited = time.monotonic() - started
                if waited >= patience_s:
                    raise StorageUnavailable(
                        f"the study's database {what} did not answer for {waited:.0f} s ({reason}); start it and run "
                        "the same command again to resume") from None
                if not waiting:
                    waiting = True
                    OUTAGES.begin()
                    logger.info(f"database {what} unreachable ({reason}); retrying for up to {patience_s:.0f} s")
                time.sleep(min(delay, max(0.0, patience_s - waited)))
                delay = min(2 * delay, MAX_BACKOFF_S)
            else:
                if waiting:
                    logger.info(f"database {what} answered again after {time.monotonic() - started:.0f} s")
                return result
    finally:
        if waiting:
            OUTAGES.end()


class ResilientRDBStorage(RDBStorage):
    """Optuna's RDB storage whose calls ride out a database restart (see the module's docstring).

    Still an ``RDBStorage``, so Optuna puts its trial cache in front of it and its heartbeat works as usual.
    """

    def __init__(self, url: str, patience_s: float = PATIENCE_S, **kwargs: Any) -> None:
        self.patience_s = patience_s
        self.display = _without_password(url)
        # a local SQLite file does not restart: only a lock held by another writer passes
        self.transient = _sqlite_locked if url.startswith("sqlite") else is_transient
        engine = {"pool_pre_ping": True} if not url.startswith("sqlite") else {}
        from sqlalchemy import exc as sa

        with_retries(lambda: _check_tables(url, self.display), self.display, patience_s, transient=self.transient)
        for attempt in range(5):
            try:
                with_retries(lambda: RDBStorage.__init__(self, url, engine_kwargs=engine, **kwargs), self.display,
                             patience_s, transient=self.transient)
                return
            except (sa.IntegrityError, sa.ProgrammingError):
                # another process is creating Optuna's tables in the same new database: use its tables
                if attempt == 4:
                    raise
                time.sleep(0.5 * (attempt + 1))
            except sa.DatabaseError as exc:
                raise StateError(f"study database {self.display} is damaged ({why(exc.orig or exc)}); {RESTORE} "
                                 "(SQLite's `.recover` command may save its rows)") from None
            except RuntimeError:  # Optuna: tables of another version of its schema
                raise StateError(f"study database {self.display} was set up by another Optuna version than "
                                 f"{optuna.__version__}; back it up and run `optuna storage upgrade --storage URL` "
                                 "if that one was older, or give --storage a database of its own") from None

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """Optuna's stale trials (their last beat is too old), and the running trials that never beat: a retried
        ``create_new_trial`` whose first attempt committed before its connection was cut leaves one such trial,
        as does a process killed between ``ask()`` and its first beat. Optuna never fails those by itself, and a
        trial that stays running forever holds one of the study's places."""
        def stale() -> list[int]:
            beaten = RDBStorage._get_stale_trial_ids(self, study_id)
            return beaten + [i for i in self._never_beaten(study_id) if i not in beaten]
        return with_retries(stale, self.display, self.patience_s)

    def _never_beaten(self, study_id: int) -> list[int]:
        from datetime import datetime

        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        with _create_scoped_session(self.scoped_session) as session:
            now = datetime.now()  # Optuna gives the start as naive local time
            running = (session.query(models.TrialModel)
                       .filter(models.TrialModel.study_id == study_id,
                               models.TrialModel.state == TrialState.RUNNING,
                               ~models.TrialModel.heartbeats.any())
                       .all())
            return [t.trial_id for t in running if t.datetime_start is not None and (
                now - t.datetime_start).total_seconds() > NEVER_BEATEN_AFTER_S]


def _retrying(method: Callable[..., T]) -> Callable[..., T]:
    insert = method.__name__ in INSERTS

    @functools.wraps(method)
    def call(self: ResilientRDBStorage, *args: Any, **kwargs: Any) -> T:
        return with_retries(lambda: method(self, *args, **kwargs), self.display, self.patience_s, insert,
                            getattr(self, "transient", is_transient))
    return call


def _sqlite_locked(exc: BaseException) -> bool:
    """SQLite's only passing error: another process holds the write lock."""
    return any("database is locked" in str(error) for error in _chain(exc))


def _check_tables(url: str, display: str) -> None:
    """A database that holds tables, but not Optuna's, is someone else's: refused before Optuna adds its own."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        tables = set(sqlalchemy.inspect(engine).get_table_names())
    except sqlalchemy.exc.DatabaseError as exc:
        if isinstance(exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)) and \
                not url.startswith("sqlite"):
            raise  # a server that does not answer: retried
        raise StateError(f"study database {display} is damaged ({why(exc.orig or exc)}); {RESTORE} "
                         "(SQLite's `.recover` command may save its rows)") from None
    finally:
        engine.dispose()
    if tables and not {"studies", "trials", "version_info"} <= tables:
        raise StateError(f"study database {display} holds tables that are not an Optuna study's "
                         f"({', '.join(sorted(tables)[:5])}); give --storage a database of its own (nothing was "
                         "written to it)")


# Writes of a row that may exist once and that return nothing: see ``with_retries``.
INSERTS = {"set_trial_param", "_set_trial_param", "set_trial_intermediate_value", "set_trial_user_attr",
           "set_trial_system_attr", "set_study_user_attr", "set_study_system_attr"}


# Every method that reaches the database, including the private ones Optuna's cache and heartbeat call.
for _name in ("create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
              "get_study_id_from_name", "get_study_name_from_id", "get_study_directions", "get_study_user_attrs",
              "get_study_system_attrs", "get_all_studies", "create_new_trial", "_create_new_trial", "set_trial_param",
              "_set_trial_param", "get_trial_id_from_study_id_trial_number", "get_trial_number_from_id",
              "get_trial_param", "set_trial_state_values", "set_trial_intermediate_value", "set_trial_user_attr",
              "set_trial_system_attr", "get_trial", "get_all_trials", "_get_trials", "get_n_trials",
              "get_best_trial", "_get_best_trial_id", "record_heartbeat"):
    if hasattr(RDBStorage, _name):
        setattr(ResilientRDBStorage, _name, _retrying(getattr(RDBStorage, _name)))


def _without_password(url: str) -> str:
    head, sep, tail = url.partition("://")
    if "@" in tail and ":" in tail.split("@", 1)[0]:
        user = tail.split("@", 1)[0].split(":", 1)[0]
        return f"{head}{sep}{user}:***@{tail.split('@', 1)[1]}"
    return url


def make_storage(url: str, patience_s: float = PATIENCE_S) -> optuna.storages.BaseStorage:
    """An RDB URL (``sqlite:///...``, ``postgresql://...``) or a journal file path (``journal:`` prefix optional).

    On RDBs Optuna's heartbeat marks the trials of a dead process stale and its retry callback queues them again.
    A damaged study file is one line naming it (``StateError``) and is left as it is; a journal whose last record
    was cut by a kill is resumed (see ``open_journal``).
    """
    if "://" in url:
        _check_driver(url)
        sqlite = _sqlite_file(url)
        if sqlite is not None:
            _check_sqlite_file(sqlite)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)
        return ResilientRDBStorage(url, patience_s, heartbeat_interval=HEARTBEAT_S, grace_period=STALE_AFTER_S,
                                   heartbeat_stale_trial_callback=retry)
    return open_journal(Path(url.removeprefix("journal:")))


def open_journal(path: Path) -> optuna.storages.JournalStorage:
    """Optuna's journal storage on ``path``, after checking every record.

    Optuna appends each record as one line and ``fsync``s it, under its lock; a kill or a full disk can still cut
    the last line. Optuna skips a cut last line when reading but appends the next record right after it, which
    makes one bad line in the middle: the study could no longer be read. So a cut last line is moved aside
    (into ``<journal>.cut-<time>``) before the journal is opened, under the writers' lock, and the run resumes from
    the complete records. A bad line anywhere else is an error naming it: what followed cannot be trusted."""
    from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

    if path.exists() and not path.is_file():
        raise StateError(f"journal {path} is a folder, not a journal file; give --storage another file")
    output_folder(path.parent, "--storage's folder")
    if path.is_file() and path.stat().st_size:
        lock = JournalFileSymlinkLock(str(path))
        lock.acquire()
        try:
            _settle_cut_record(path)
        finally:
            lock.release()
        _check_records(path)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def _settle_cut_record(path: Path) -> None:
    """A last line without its newline: completed if it is a whole record, else moved aside (see
    ``open_journal``)."""
    with open(path, "rb") as handle:
        size = handle.seek(0, 2)
        handle.seek(max(0, size - 1))
        if handle.read(1) == b"\n":
            return
        raw = path.read_bytes()
    start = raw.rfind(b"\n") + 1
    fragment = raw[start:]
    if not fragment.startswith(b'{"op_code":'[:len(fragment)]):  # not the start of one of Optuna's records
        last = raw.count(b"\n") + 1
        raise StateError(f"journal {path}, line {last} (its last): not a record (damaged); restore "
                         "the journal from a backup; the journal was left as it is")
    try:
        json.loads(fragment)
    except ValueError:
        pass
    else:  # the record was whole, only its newline was lost
        append_line(path, "")  # (its newline)
        return
    side = path.with_name(f"{path.name}.cut-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        side.write_bytes(fragment)
        with open(path, "r+b") as handle:
            handle.truncate(start)
            os.fsync(handle.fileno())
    except OSError as exc:
        raise write_failed(path, exc) from None
    complete = raw.count(b"\n")
    logger.info(f"{path}: its last record was cut by a kill or a full disk ({len(fragment)} bytes, kept in {side.name}); "
          f"resuming from the {complete} complete records")


def _check_records(path: Path) -> None:
    """Every line of the journal is one of Optuna's records, or a one-line error naming the first that is not."""
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith(b"\n"):
                break  # the last line, being appended by another process now (a cut one was settled under the lock)
            try:
                if "op_code" not in json.loads(line):
                    raise ValueError("not a record")
            except (ValueError, TypeError):
                keep = number - 1
                partial = (f", or keep its first {keep} records (the trials recorded later are lost) with `head -n "
                           f"{keep} {path} > NEW` and run again with --storage journal:NEW") if keep else ""
                raise StateError(
                    f"journal {path}, line {number}: not a record (damaged), so the study cannot be read past it; "
                    f"restore the journal from a backup{partial}; the journal was left as it is") from None


def refuse_lost_study(url: str, listing: Path) -> None:
    """Before a study file is opened (which writes Optuna's tables into an empty SQLite file): a missing or empty
    study file while the job's folder lists trials is a lost study (see ``nas.trials.study.open_study``), refused
    without touching either."""
    path = _sqlite_file(url) if "://" in url else Path(url.removeprefix("journal:"))
    if path is None or (path.is_file() and path.stat().st_size) or (path.exists() and not path.is_file()):
        return
    rows = listed_rows(listing)
    if rows:
        raise StateError(f"{listing} lists {rows} trials, but its study file {path} is "
                         f"{'empty' if path.exists() else 'not there'} (emptied, replaced or moved): restore the study "
                         "file, or move the folder aside to start a new study (its outputs were left as they are)")


def listed_rows(table: Path) -> int:
    """Data rows of a job's CSV table of its trials (0 when it is not there)."""
    try:
        with open(table, "rb") as handle:
            return max(0, sum(1 for line in handle if line.strip()) - 1)
    except OSError:
        return 0


def _sqlite_file(url: str) -> Path | None:
    if not url.startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    return Path(database) if database and database != ":memory:" else None


def _check_sqlite_file(path: Path) -> None:
    """The study's SQLite file is one (or is not there yet): a damaged file is named before SQLAlchemy opens it."""
    if path.exists() and not path.is_file():
        raise StateError(f"study database {path} is a folder, not an SQLite file; give --storage another file")
    output_folder(path.parent, "--storage's folder")
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        with open(path, "rb") as handle:
            header = handle.read(16)
    except OSError as exc:
        raise StateError(f"cannot read the study database {path} ({why(exc)}); fix its permissions") from None
    if header != b"SQLite format 3\x00":
        raise StateError(f"study database {path} is not an SQLite database (damaged, or another kind of file); "
                         f"{RESTORE} (the file was left as it is)")


def _check_driver(url: str) -> None:
    """A malformed URL or a missing database driver is a one-line error that says what to install."""
    from sqlalchemy import exc as sa
    from sqlalchemy.engine import make_url

    try:
        dialect = make_url(url).get_dialect()
    except (sa.ArgumentError, sa.NoSuchModuleError) as exc:
        raise RunError(f"--storage {_without_password(url)}: {exc}") from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        module = exc.name or str(exc)
        hint = "pip install 'swiftnas[postgres]'" if module.startswith("psycopg") else f"pip install {module}"
        raise RunError(f"--storage {_without_password(url)} needs the {module} driver, which is not "
                          f"installed: {hint}") from None


def open_recorded(out: str | Path, meta_name: str, from_dict: Callable[[dict[str, Any]], T],
                  error: type[Exception], command: str) -> tuple[T, optuna.Study]:
    """A job reopened from its folder: the settings its start wrote to ``meta_name`` (with the storage URL) and
    its study. How `nas report`, `nas ablate report` and `nas ablate --reuse` find a search or an ablation."""
    out = Path(out)
    meta_path = out / meta_name
    if not meta_path.is_file():
        raise error(f"{out} holds no {meta_path.stem} (no {meta_name}); run `{command} --out {out}` first")
    meta = read_json(meta_path, f"{meta_path.stem} record", f"restore it, or run `{command} --out {out}` "
                     "again with the same settings to write it again (its study is kept)")
    try:
        url = meta.pop("storage_url")
        cfg = from_dict(meta)
    except (TypeError, KeyError, AttributeError) as exc:  # a field this version does not know (or lacks): written by another version
        raise error(f"{meta_path} was written by another version of SwiftNAS ({exc}); run it again with this "
                    "version, in a new --out") from None
    try:
        study = optuna.load_study(study_name=cfg.study, storage=make_storage(url))
    except KeyError:
        raise error(f"study {cfg.study!r} is not in {url}") from None
    return cfg, study
