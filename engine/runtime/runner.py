"""The engine thread: it runs every forward of its engine, so requests share the hardware by design
rather than by contention. Generations decode together in batches (engine.runtime.batching; a
causal model's in engine.runtime.causal, an encoder-decoder's in engine.runtime.seq2seq), one step for all of them at a time; other work (label
scoring, a comparison's quality scoring, a benchmark sweep) runs between those steps, one forward per turn.
What starts at each step is the scheduler's decision (engine.runtime.scheduler).

One thread, also because a second thread doing torch work halves both's speed here: PyTorch's
OpenMP runtime (libgomp) keeps a team of threads per thread that ran a parallel region, and once
there are more of them than cores it stops spinning between regions. A compiled decode step ran at
20 ms on the first thread to use OpenMP and 44-49 ms on any other, while the first one's team lived
(measured, 2-core EPYC). So warm-ups and benchmarks go through `call` too; a model's load runs on a
thread that ends with it (engine.runtime.aside), so that the streams decode meanwhile.

A request thread submits its work and reads the events back from its Ticket (text deltas, then the
Result); closing that iterator cancels the work at the next step.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Iterator
from typing import TypeVar, cast

import torch

from engine.api.request import GenerationRequest
from engine.api.results import Result
from engine.models.embedded import ProgressFn
from engine.models.loader import LoadedModel
from engine.models.out_of_memory import out_of_memory
from engine.platform.errors import EngineStoppedError
from engine.platform.heap import give_back
from engine.platform.measure import PeakMemory
from engine.platform.memory import is_out_of_memory
from engine.runtime.batching import Batch, JoinError, Row, request_key
from engine.runtime.causal import CausalBatch
from engine.runtime.decoding import Decoding
from engine.runtime.prompt import Encoded
from engine.runtime.scheduler import Scheduler, Work
from engine.runtime.scoring import score_labels
from engine.runtime.seq2seq import Seq2SeqBatch
from engine.runtime.tickets import Generation, Job, Report, Ticket, no_progress, once

T = TypeVar("T")
log = logging.getLogger(__name__)
IDLE_EXIT_S = 30.0  # the thread ends after this long with nothing to do (a later submit starts another)


class Runner:
    """The engine's one thread and what it runs now."""

    def __init__(
        self, scheduler: Scheduler, device: torch.device, prefill_chunk: int, stepped: Callable[[], None] = lambda: None
    ):
        self.scheduler, self.device = scheduler, device
        # A new prompt's tokens prefilled between two steps while sequences decode (0: whole prompts)
        self.prefill_chunk = prefill_chunk
        self._stepped = stepped  # told at each step (background work held meanwhile knows it is not stuck)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        # Owned by the runner's thread:
        self._batches: list[Batch] = []
        self._jobs: list[Job] = []

    def generate(
        self,
        loaded: LoadedModel,
        request: GenerationRequest,
        encoded: Encoded,
        alone: bool = False,
        draft: LoadedModel | None = None,
    ) -> Iterator[str | Result]:
        """Text deltas as they come, then the Result, of a request on a loaded model (`encoded`: its
        prompt, tokenized once by the caller; `draft`: the model that guesses, speculation draft)."""
        ticket = Ticket(alone)
        if request.candidates is not None:
            work: Work = Job(lambda: once(lambda: score_labels(loaded, request, encoded)), ticket)
        else:
            work = Generation(loaded, request, encoded, request_key(loaded, request, encoded), ticket, draft)
        yield from self._follow(work)

    def stream(self, start: Callable[[], Iterator[T]], alone: bool = False) -> Iterator[T]:
        """The items of the iterator `start()` makes, each made on the engine thread in its own turn
        (`alone`: nothing else runs meanwhile, e.g. a remote server measured in a comparison)."""
        yield from self._follow(Job(start, Ticket(alone)))

    def call(self, fn: Callable[[ProgressFn], T], alone: bool = False, progress: ProgressFn | None = None) -> T:
        """fn(report) run by the engine thread, between steps; each report(fraction, message) it makes
        reaches `progress` in the caller's thread (a UI's progress belongs to the request's)."""
        if threading.current_thread() is self._thread:  # already on it (a job that loads a model)
            return fn(progress or no_progress)
        ticket = Ticket(alone)
        self._submit(Job(lambda: once(lambda: fn(lambda *report: ticket.put(Report(*report)))), ticket))
        value = None
        for item in ticket:
            if isinstance(item, Report):
                if progress:
                    progress(item.fraction, item.message)
            else:
                value = item
        return value  # type: ignore[return-value]  # the one non-report item is fn's value

    def decoding(self) -> bool:
        """Whether sequences are decoding now (any thread may ask)."""
        return any(batch.rows for batch in list(self._batches))

    def waiting(self) -> int:
        with self._cond:
            return len(self.scheduler.waiting)

    def stop(self, timeout: float = 10.0) -> None:
        """End the thread after its current step; what it holds or has waiting ends with
        EngineStoppedError."""
        with self._cond:
            self._stopping = True
            thread = self._thread
            self._cond.notify()
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("the engine thread is still inside a step after %.0f s; exiting now may abort", timeout)

    def _follow(self, work: Work) -> Iterator:
        self._submit(work)
        try:
            yield from work.ticket
        finally:
            work.ticket.cancelled.set()  # a consumer that stops reading stops the work

    def _submit(self, work: Work) -> None:
        with self._cond:
            if self._stopping:
                raise EngineStoppedError("The engine is shutting down; send the request again once it is back.")
            self.scheduler.waiting.append(work)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="studio-engine", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _busy(self) -> bool:
        return bool(self._batches or self._jobs)

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # a fault of the runner itself: no request may wait forever on it
            log.exception("the engine thread stopped on a fault; the next request starts a new one")
            self._end_all(exc)

    def _end_all(self, error: BaseException) -> None:
        """This thread ends: every request it holds or has waiting gets `error`."""
        with self._cond:
            self._thread = None
            stranded = [work.ticket for work in self.scheduler.waiting]
            self.scheduler.waiting.clear()
        stranded += [job.ticket for job in self._jobs]
        for batch in self._batches:
            batch.fail(error)
        self._batches.clear()
        self._jobs.clear()
        for ticket in stranded:
            ticket.put(error)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self.scheduler.waiting and not self._busy() and not self._stopping:
                    if not self._cond.wait(IDLE_EXIT_S) and not self.scheduler.waiting:
                        self._thread = None
                        return
                if self._stopping:
                    break
                admitted = self.scheduler.admit(self._busy())
            self._stepped()
            for work in admitted:
                try:
                    self._start(work)
                except Exception as exc:  # its prompt failed: this request hears why, the rest carry on
                    work.ticket.put(self._explained(exc, "reading the prompt of", getattr(work, "loaded", None)))
            self._drop_cancelled()
            self._step_batches()
            for job in list(self._jobs):
                self._advance(job)
            self._retire_empty()
        self._end_all(EngineStoppedError("The engine shut down before this request finished."))

    def _step_batches(self) -> None:
        """A decode step for every batch, after what joins it is prefilled: while sequences decode, a
        chunk of a prompt (`prefill_chunk`), else whole prompts. In a frame of its own: a loop
        variable left in `_loop` kept the last batch stepped, and its KV cache, alive while the thread
        waited for work."""
        chunk = self.prefill_chunk if self.decoding() else 0
        for batch in list(self._batches):
            if batch.joining:
                try:
                    batch.join_step(chunk)
                except JoinError as failed:
                    explained = self._explained(failed.error, "reading the prompt of", batch.loaded)
                    failed.row.deliver(explained)
            if batch.rows:
                try:
                    batch.step()
                except Exception as exc:  # the step itself failed: every request in it hears why
                    batch.fail(self._explained(exc, f"decoding {len(batch.rows)} requests of", batch.loaded))

    def _start(self, work: Work) -> None:
        ticket = work.ticket
        ticket.started()
        queue_s = time.perf_counter() - ticket.submitted
        if isinstance(work, Job):
            work.items = work.start()
            self._jobs.append(work)
            return
        loaded = work.loaded
        row = Row(
            Decoding(loaded, work.request, work.encoded, time.perf_counter()),
            deliver=ticket.put,
            cancelled=ticket.cancelled.is_set,
            memory=PeakMemory(loaded.device),
            queue_s=queue_s,
            choice=work.key[1],
            draft=work.draft,
        )
        batches, key = loaded.batches, work.batch
        assert key is not None  # the scheduler placed it before admitting it
        if key not in batches.by_key:
            kind = CausalBatch if loaded.spec.family == "causal" else Seq2SeqBatch
            batches.by_key[key] = kind(loaded, key, batches.capacity)
            self._batches.append(batches.by_key[key])
        batches.by_key[key].add(row)

    def _advance(self, job: Job) -> None:
        try:
            assert job.items is not None  # _start sets it before it lists the job
            if job.ticket.cancelled.is_set():
                # stream()'s callers pass generator functions: closing one runs its cleanup
                cast(Generator, job.items).close()
                raise StopIteration
            job.ticket.put(next(job.items))
        except StopIteration:
            self._jobs.remove(job)
            job.ticket.end()
        except Exception as exc:
            self._jobs.remove(job)
            job.ticket.put(self._explained(exc, "running", None))

    def _drop_cancelled(self) -> None:
        for batch in self._batches:
            for row in [r for r in batch.rows + batch.joining if r.cancelled()]:
                batch.remove(row)

    def _retire_empty(self) -> None:
        """Batches with no rows left free their caches; once nothing runs, malloc gives the pages back
        (their caches and what their requests freed: engine.platform.heap), not at every step."""
        if self._drop_empty() and not self._busy():
            give_back()

    def _drop_empty(self) -> int:
        """Drop the batches with no rows left (nothing else holds them or their caches); how many."""
        empty = [b for b in self._batches if not b.rows and not b.joining]
        for batch in empty:
            self._batches.remove(batch)
            batch.loaded.batches.by_key.pop(batch.key, None)
        return len(empty)

    def _explained(self, exc: Exception, doing: str, loaded: LoadedModel | None) -> Exception:
        """An out-of-memory becomes the user's error (engine.models.out_of_memory), naming the model
        when known; any other fault is passed on as it is."""
        if not is_out_of_memory(exc):
            return exc
        if loaded is None:
            return out_of_memory(exc, doing, self.device)
        return out_of_memory(exc, doing, loaded.device, loaded.spec.name, loaded.precision)
