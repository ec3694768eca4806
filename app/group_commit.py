"""Group commit: writes that arrive together in one process share one transaction and one commit."""
from __future__ import annotations

import threading
from typing import Any, Callable, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class _Waiting(Generic[Item]):
    __slots__ = ("item", "done", "leads", "result", "error")

    def __init__(self, item: Item):
        self.item = item
        self.done = threading.Event()
        self.leads = False
        self.result: Any = None
        self.error: BaseException | None = None


class GroupCommit(Generic[Item, Result]):
    """Each caller waits until its own item is committed; items that arrive while a commit is under way go in
    the next one, together.

    A webhook's own work is two small inserts; its commit (a write to the WAL, on PostgreSQL a disk flush) and
    the transaction around it cost more. With several request threads per process, the first caller writes
    everything waiting (`write_batch`, one transaction) while later ones queue; when it is done, the oldest
    waiter takes over with whatever queued meanwhile. No caller waits on a timer: a lone webhook is written at
    once, and one is answered only after its own commit.

    If a batch fails, each of its items is written again on its own (`write_one`), so one bad item (a shop
    erased meanwhile) fails only its own caller.
    """

    def __init__(self, write_batch: Callable[[list[Item]], list[Result]], write_one: Callable[[Item], Result]):
        self._write_batch = write_batch
        self._write_one = write_one
        self._lock = threading.Lock()
        self._queue: list[_Waiting[Item]] = []
        self._writing = False
        self.commits = 0  # transactions written (the tests read these)
        self.items = 0

    def submit(self, item: Item) -> Result:
        waiting = _Waiting(item)
        with self._lock:
            self._queue.append(waiting)
            leads = not self._writing
            self._writing = True
        if not leads:
            waiting.done.wait()
            if not waiting.leads:
                return self._outcome(waiting)
        self._lead()
        return self._outcome(waiting)

    def _lead(self) -> None:
        with self._lock:
            batch, self._queue = self._queue, []
        try:
            self._write(batch)
        except BaseException as exc:  # an interrupt mid-write: nobody in the batch may wait forever
            for waiting in batch:
                if waiting.result is None and waiting.error is None:
                    waiting.error = exc
                waiting.done.set()
            raise
        finally:
            with self._lock:
                if self._queue:
                    successor = self._queue[0]
                    successor.leads = True
                    successor.done.set()
                else:
                    self._writing = False

    def _write(self, batch: list[_Waiting[Item]]) -> None:
        try:
            results = self._write_batch([waiting.item for waiting in batch])
            self.commits += 1
            for waiting, result in zip(batch, results):
                waiting.result = result
        except Exception as batch_error:
            if len(batch) == 1:
                batch[0].error = batch_error
            else:
                for waiting in batch:
                    try:
                        waiting.result = self._write_one(waiting.item)
                        self.commits += 1
                    except Exception as error:  # noqa: BLE001 - handed to that caller
                        waiting.error = error
        self.items += len(batch)
        for waiting in batch:
            waiting.done.set()

    @staticmethod
    def _outcome(waiting: _Waiting[Item]) -> Any:
        if waiting.error is not None:
            raise waiting.error
        return waiting.result
