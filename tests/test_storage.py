"""Storage behaviour that needs no server: retries of lost connections, their bound, and the callable evaluator's
user errors."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import exc as sa

from nas.trials import storage
from nas.trials.errors import RunError
from nas.search.config import SearchConfig, SearchError


@pytest.fixture(autouse=True)
def no_outage_left_behind():
    """The outages these tests simulate are remembered process-wide (``storage.OUTAGES``): a test run after them
    would otherwise wait for stale heartbeats as if a database had just come back."""
    yield
    storage.OUTAGES.ended_at, storage.OUTAGES.ongoing = 0.0, 0


def connection_lost() -> sa.OperationalError:
    return sa.OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))


def test_a_lost_connection_is_retried_until_it_answers(capsys):
    calls = []

    def flaky():
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise connection_lost()
        return "answer"

    assert storage.with_retries(flaky, "db", patience_s=30) == "answer"
    assert len(calls) == 3 and calls[2] - calls[1] >= calls[1] - calls[0]  # backing off
    err = capsys.readouterr().err
    assert "unreachable" in err and "answered again" in err
    assert storage.seconds_since_outage() < storage.STALE_AFTER_S  # recovery of stale trials waits a little


def test_a_lost_connection_that_optuna_handled_first_is_still_retried():
    """Optuna's ``_get_trials`` takes a lost connection for SQLite's variable limit and queries again in the same
    session: the error that reaches us is StorageInternalError <- PendingRollbackError <- OperationalError (seen on
    CI when PostgreSQL restarted under a running search)."""
    import optuna

    def as_optuna_raises_it():
        try:
            try:
                raise connection_lost()
            except sa.OperationalError:
                raise sa.PendingRollbackError("Can't reconnect until invalid transaction is rolled back.")
        except sa.SQLAlchemyError as e:
            raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from e

    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 2:
            as_optuna_raises_it()
        return "answer"

    assert storage.with_retries(flaky, "db", patience_s=30) == "answer" and len(calls) == 2


def test_a_database_that_stays_away_ends_in_one_line_after_the_patience():
    started = time.monotonic()
    with pytest.raises(storage.StorageUnavailable, match=r"database db did not answer for \d+ s .*run the same"):
        storage.with_retries(lambda: (_ for _ in ()).throw(connection_lost()), "db", patience_s=1.0)
    assert 1.0 <= time.monotonic() - started < 3.0


def test_other_errors_are_not_retried():
    calls = []

    def wrong():
        calls.append(1)
        raise sa.IntegrityError("INSERT", {}, Exception("duplicate key"))

    with pytest.raises(sa.IntegrityError):
        storage.with_retries(wrong, "db", patience_s=30)
    assert calls == [1]


def test_passwords_stay_out_of_messages():
    assert storage._without_password("postgresql://nas:secret@db:5432/x") == "postgresql://nas:***@db:5432/x"
    assert storage._without_password("postgresql://nas@db/x") == "postgresql://nas@db/x"


def test_sqlite_storage_is_the_resilient_one_with_a_heartbeat(tmp_path):
    made = storage.make_storage(f"sqlite:///{tmp_path / 'study.db'}")
    assert isinstance(made, storage.ResilientRDBStorage) and made.get_heartbeat_interval() == storage.HEARTBEAT_S


@pytest.mark.parametrize("evaluator", ["callable:", "callable:module", "callable:module:", "lookup:x", "callable::f"])
def test_bad_evaluators_are_refused_in_one_line(evaluator):
    with pytest.raises(SearchError, match="accepted: proxy, supernet:DIR, callable:MODULE:FUNCTION"):
        SearchConfig(budget_ms=1.0, evaluator=evaluator)


def test_a_callable_evaluator_that_cannot_be_imported_is_one_line():
    from nas.search.context import load_callable

    with pytest.raises(SearchError, match="cannot import no_such_module"):
        load_callable("callable:no_such_module:f")
    with pytest.raises(SearchError, match="has no function 'nope'"):
        load_callable("callable:swiftnas_testing.evaluators:nope")
    assert load_callable("callable:swiftnas_testing.evaluators:score").__name__ == "score"


def test_the_callable_evaluator_is_part_of_the_study_identity():
    a = SearchConfig(budget_ms=1.0, evaluator="callable:swiftnas_testing.evaluators:score").identity()
    b = SearchConfig(budget_ms=1.0, evaluator="callable:swiftnas_testing.evaluators:logged").identity()
    assert a["evaluator"] != b["evaluator"] and "evaluator" not in SearchConfig(budget_ms=1.0).identity()


def test_a_bad_storage_url_or_a_missing_driver_is_one_line():
    with pytest.raises(RunError, match="needs the .* driver, which is not installed"):
        storage.make_storage("mysql://user@127.0.0.1/db")
    with pytest.raises(RunError, match="--storage nosuchdb://"):
        storage.make_storage("nosuchdb://x/y")


def test_a_running_trial_that_never_beat_is_failed_and_queued_again(tmp_path, monkeypatch):
    """A retried trial creation whose first attempt had committed leaves a running trial with no heartbeat, which
    Optuna alone would keep running forever (holding one of the study's places)."""
    import optuna
    from optuna.trial import TrialState

    monkeypatch.setattr(storage, "NEVER_BEATEN_AFTER_S", 0.5)
    study = optuna.create_study(storage=storage.make_storage(f"sqlite:///{tmp_path / 's.db'}"), study_name="s")
    beating, orphan = study.ask({"x": optuna.distributions.IntDistribution(0, 9)}), study.ask()
    study._storage.record_heartbeat(beating._trial_id)
    time.sleep(0.6)
    optuna.storages.fail_stale_trials(study)
    states = {t.number: t.state for t in study.get_trials()}
    assert states[beating.number] == TrialState.RUNNING and states[orphan.number] == TrialState.FAIL
    assert any(t.state == TrialState.WAITING for t in study.get_trials())  # queued again


def test_a_row_that_a_cut_connection_had_already_written_is_not_an_error():
    """The commit reached the database, its answer did not: the retry finds the row written."""
    duplicate = sa.IntegrityError("INSERT", {}, Exception("duplicate key value violates unique constraint"))
    attempts = iter([connection_lost(), duplicate])

    def insert():
        raise next(attempts)

    assert storage.with_retries(insert, "db", patience_s=30, insert=True) is None
    with pytest.raises(sa.IntegrityError):  # without a lost connection first, a duplicate is a real error
        storage.with_retries(lambda: (_ for _ in ()).throw(duplicate), "db", patience_s=30, insert=True)
    attempts = iter([connection_lost(), duplicate])
    with pytest.raises(sa.IntegrityError):  # and for calls that are not single-row inserts
        storage.with_retries(insert, "db", patience_s=30)
