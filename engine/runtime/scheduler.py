"""The scheduler decides, without running anything, what starts at the next step of the engine
thread (engine.runtime.runner runs it).

New work joins at the next step (continuous batching), in arrival order as far as batches have
room; a request that must be measured `alone` (a comparison's runs) waits until nothing else runs,
nothing overtakes it meanwhile, and it holds the engine while it runs, so its timings are its own.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from engine.models.loader import LoadedModel
from engine.runtime.batching import planned_bytes
from engine.runtime.step import BatchKey, own_batch
from engine.runtime.tickets import Generation, Job, Ticket

Work = Generation | Job
Room = dict[tuple[int, BatchKey], int]  # (model id, batch key) -> rows left, as this round plans them


class Scheduler:
    """The waiting work and the rules that admit it. `fits(bytes)`: whether a new batch's cache of that
    size stays within the engine's memory budget."""

    def __init__(self, fits: Callable[[int], bool]):
        self.waiting: deque[Work] = deque()
        self._fits = fits
        self._alone: Ticket | None = None  # the running `alone` work, if any

    def admit(self, busy: bool) -> list[Work]:
        """What starts now, given whether anything runs (`busy`); the caller holds the queue's lock."""
        if self._alone is not None and not (self._alone.ended.is_set() or self._alone.cancelled.is_set()):
            return []
        self._alone = None
        admitted: list[Work] = []
        room: Room = {}
        for work in list(self.waiting):
            if work.ticket.cancelled.is_set():
                self.waiting.remove(work)
                work.ticket.end()
                continue
            if work.ticket.alone:
                if not busy and not admitted:
                    self.waiting.remove(work)
                    self._alone = work.ticket
                    if isinstance(work, Generation):
                        work.batch = own_batch(work.key)
                    admitted.append(work)
                break  # nothing overtakes a request waiting to run alone
            if isinstance(work, Generation):
                if (key := self._place(work, room, busy)) is None:
                    continue
                work.batch = key
                room[(id(work.loaded), key)] -= 1
            self.waiting.remove(work)
            admitted.append(work)
        return admitted

    def _place(self, work: Generation, room: Room, busy: bool) -> BatchKey | None:
        """The batch a request joins: of those with a length bucket at least its own, room, and page
        bounds kept exactly if its attention picks keys by content (a row that does not would hold a
        place such a row needs), the fullest (a sequence shorter than its batch's bucket reads only its
        own keys; each row attends by its own choice); else a new batch of its own bucket, memory
        permitting. None: it waits."""
        own = own_batch(work.key)
        bucket, pages = own

        def free(key: BatchKey) -> int:
            where = (id(work.loaded), key)
            if where not in room:
                room[where] = self._room(work.loaded, key, busy)
            return room[where]

        planned = {key for loaded_id, key in room if loaded_id == id(work.loaded)}  # new batches of this round
        existing = set(work.loaded.batches.by_key) | planned
        fitting = [key for key in existing if key[0] >= bucket and key[1] == pages and free(key) > 0]
        if fitting:
            return min(fitting, key=lambda key: (free(key), key[0]))
        return own if free(own) > 0 else None

    def _room(self, loaded: LoadedModel, key: BatchKey, busy: bool) -> int:
        batches = loaded.batches
        if key in batches.by_key:
            return batches.room(key)
        # With nothing running, a batch that overshoots the budget still runs: there is nothing to wait for.
        if not busy or self._fits(planned_bytes(loaded, key, batches.capacity)):
            return batches.capacity
        return 0
