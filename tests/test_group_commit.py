"""Group commit: callers arriving during a commit share the next one, and each gets its own outcome."""
from __future__ import annotations

import threading
import time

import pytest

from app.group_commit import GroupCommit


class Recorder:
    """A database stand-in that records each transaction's items; the first one can be held open."""

    def __init__(self):
        self.transactions: list[list[str]] = []
        self.first_started = threading.Event()
        self.release_first = threading.Event()
        self.lock = threading.Lock()

    def write_batch(self, items: list[str]) -> list[str]:
        if not self.transactions and not self.first_started.is_set():
            self.first_started.set()
            self.release_first.wait(timeout=30)
        if any(item.startswith("bad") for item in items):
            raise ValueError("a row was refused")
        with self.lock:
            self.transactions.append(list(items))
        return [f"stored {item}" for item in items]

    def write_one(self, item: str) -> str:
        return self.write_batch([item])[0]


def submit_all(group: GroupCommit, items: list[str]) -> tuple[dict, dict, list[threading.Thread]]:
    results, errors = {}, {}

    def call(item: str) -> None:
        try:
            results[item] = group.submit(item)
        except Exception as exc:  # noqa: BLE001 - recorded for the assertions
            errors[item] = exc

    threads = [threading.Thread(target=call, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    return results, errors, threads


def wait_queued(group: GroupCommit, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(group._queue) < count:
        assert time.monotonic() < deadline, "callers did not queue"
        time.sleep(0.01)


def test_a_lone_caller_is_written_at_once_in_its_own_transaction():
    recorder = Recorder()
    recorder.release_first.set()
    group = GroupCommit(recorder.write_batch, recorder.write_one)
    assert group.submit("a") == "stored a"
    assert recorder.transactions == [["a"]] and (group.commits, group.items) == (1, 1)


def test_callers_arriving_during_a_commit_share_the_next_one_and_each_gets_its_own_result():
    recorder = Recorder()
    group = GroupCommit(recorder.write_batch, recorder.write_one)
    first, _, first_thread = submit_all(group, ["first"])
    assert recorder.first_started.wait(timeout=10)
    results, errors, threads = submit_all(group, [f"w{n}" for n in range(8)])
    wait_queued(group, 8)
    recorder.release_first.set()
    for thread in first_thread + threads:
        thread.join(timeout=30)
    assert errors == {} and first == {"first": "stored first"}
    assert results == {f"w{n}": f"stored w{n}" for n in range(8)}
    assert recorder.transactions[0] == ["first"]
    assert sorted(recorder.transactions[1]) == [f"w{n}" for n in range(8)] and len(recorder.transactions) == 2


def test_a_bad_item_in_a_shared_commit_fails_only_its_own_caller():
    recorder = Recorder()
    group = GroupCommit(recorder.write_batch, recorder.write_one)
    _, _, first_thread = submit_all(group, ["first"])
    assert recorder.first_started.wait(timeout=10)
    results, errors, threads = submit_all(group, ["good1", "bad", "good2"])
    wait_queued(group, 3)
    recorder.release_first.set()
    for thread in first_thread + threads:
        thread.join(timeout=30)
    assert results == {"good1": "stored good1", "good2": "stored good2"}
    assert list(errors) == ["bad"] and isinstance(errors["bad"], ValueError)


def test_an_error_of_a_lone_caller_reaches_that_caller_and_the_next_caller_is_written():
    recorder = Recorder()
    recorder.release_first.set()
    group = GroupCommit(recorder.write_batch, recorder.write_one)
    with pytest.raises(ValueError):
        group.submit("bad")
    assert group.submit("next") == "stored next"
