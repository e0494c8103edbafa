"""Per-version execution: a bounded queue, dynamic batching, and where the model runs.

A :class:`Executor` takes validated inputs and returns outputs. It owns the queue
bound (beyond it requests fail at once with :class:`Unavailable`), and one of two
strategies:

- **direct**: each request runs alone — on the event loop when the model is a
  microsecond model (a thread hand-off would cost more than the model), otherwise in
  the thread pool, at most ``instances`` at a time. With ``split``, a request of many
  rows is cut along axis 0 into up to ``instances`` parts that run at once, so one big
  request uses every instance (the same row independence batching relies on). With
  ``run_solo`` (a copy of the model on the runtime's own threads), one client sending
  one request at a time gets every core: after more than ``SOLO_AFTER`` requests in a
  row that found the executor empty, such a request runs on the copy; any overlap
  sends requests back to the one-thread instances.
- **batched**: requests queue; a collector waits up to ``max_queue_delay_us`` for more,
  merges requests with the same inner shapes and dtypes along axis 0 (up to
  ``max_batch_size`` rows, stopping early at a preferred size), runs the batch once
  and splits the result back by row counts. With several instances idle, the queued
  rows are shared out among them instead of one batch taking them all while the other
  instances wait. Requests with other inner shapes run in their own batch.

Only a request whose inputs all have the same number of rows is merged or cut; any other
runs whole and alone. Results are never mixed between requests.

Timing per request (queue wait, compute) is returned with the outputs, so the data
plane can keep statistics without a second clock read.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from modelport.core.errors import ModelExecutionError, ModelportError, Unavailable

Arrays = dict[str, np.ndarray]
RunFn = Callable[[Arrays], Arrays]


@dataclass(frozen=True, slots=True)
class BatchingConfig:
    """Dynamic batching and queueing for one model version (Triton's names, in µs)."""

    max_batch_size: int = 0  # 0 or 1: batching off
    max_queue_delay_us: int = 500
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_size: int = 256  # pending requests beyond this are refused (503)
    instances: int = 1  # concurrent executions of this version (≥ 1 here; 0 in config = auto)
    execution: str = "auto"  # auto | inline | thread

    @property
    def enabled(self) -> bool:
        return self.max_batch_size > 1


@dataclass(slots=True)
class Timing:
    queue_ns: int = 0
    compute_ns: int = 0
    batch_size: int = 1


@dataclass(slots=True)
class _Pending:
    inputs: Arrays
    rows: int
    key: tuple[tuple[str, str, tuple[int, ...]], ...]
    future: asyncio.Future[tuple[Arrays, Timing]]
    enqueued: int = field(default_factory=time.perf_counter_ns)


#: models faster than this (median batch-1 compute) run on the event loop in "auto" mode
INLINE_BELOW_NS = 150_000
#: with ``split``, a request is cut into parts of at least this many rows (smaller parts
#: lose more to the runtime's per-call cost than running at once wins)
SPLIT_MIN_ROWS = 8
#: Requests in a row that find the executor empty before one runs on the solo copy.
SOLO_AFTER = 8


class Executor:
    """Runs one model version's requests, batched or not, with a bounded queue."""

    def __init__(
        self,
        run: RunFn,
        config: BatchingConfig,
        pool: ThreadPoolExecutor,
        *,
        inline: bool = False,
        split: bool = False,
        on_batch: Callable[[int, int], None] | None = None,
        run_solo: Callable[[Arrays], Arrays] | None = None,
    ) -> None:
        self._run = run
        self._run_solo = run_solo
        self._alone = 0  # requests in a row that found the executor empty
        self.config = config
        self._pool = pool
        self.inline = inline
        self.split = split and not inline and config.instances > 1
        self._on_batch = on_batch
        self._pending = 0  # accepted, not yet answered
        self._queue: deque[_Pending] = deque()
        self._wakeup: asyncio.Event | None = None
        self._collector: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(max(1, config.instances))
        self._running: set[asyncio.Task[None]] = set()  # batches in flight (kept referenced)
        self._busy = 0  # instances running a batch

    @property
    def pending(self) -> int:
        return self._pending

    def _admit(self) -> None:
        if self._pending >= self.config.max_queue_size:
            raise Unavailable(
                f"queue full ({self.config.max_queue_size} requests pending); retry later"
            )
        self._pending += 1

    async def submit(self, inputs: Arrays) -> tuple[Arrays, Timing]:
        """Run ``inputs`` (validated) and return the outputs with their timing."""
        self._admit()
        try:
            if self.config.enabled and _same_rows(inputs):
                return await self._submit_batched(inputs)
            return await self._submit_direct(inputs)
        finally:
            self._pending -= 1

    def run_inline(self, inputs: Arrays) -> tuple[Arrays, int]:
        """Run now, on the caller's thread (inline models); returns outputs and compute ns.

        No queue can build up: the event loop does nothing else meanwhile.
        """
        t0 = time.perf_counter_ns()
        out = self._call(inputs)
        return out, time.perf_counter_ns() - t0

    # ---------------------------------------------------------------- direct

    async def _submit_direct(self, inputs: Arrays) -> tuple[Arrays, Timing]:
        if self.inline:
            out, compute = self.run_inline(inputs)
            return out, Timing(0, compute, _rows(inputs))
        rows = _rows(inputs)
        parts = min(self.config.instances, rows // SPLIT_MIN_ROWS) if self.split else 1
        if parts > 1 and _same_rows(inputs):
            return await self._submit_split(inputs, rows, parts)
        t_enq = time.perf_counter_ns()
        # A request that finds the executor empty, after a run of such requests (one
        # client at a time), runs on the copy with the runtime's threads: every core
        # for it. Any overlap switches back to the one-thread instances at once.
        self._alone = self._alone + 1 if self._pending == 1 else 0
        solo = self._run_solo if self._alone > SOLO_AFTER else None
        out, t0, t1 = await self._in_slot(inputs, solo)
        return out, Timing(t0 - t_enq, t1 - t0, rows)

    async def _in_slot(
        self, inputs: Arrays, run: Callable[[Arrays], Arrays] | None = None
    ) -> tuple[Arrays, int, int]:
        """Run in the pool once an instance is free (on ``run`` when given); outputs,
        start and end ns."""
        async with self._slots:
            loop = asyncio.get_running_loop()
            t0 = time.perf_counter_ns()
            out = await loop.run_in_executor(self._pool, self._call, inputs, run)
            return out, t0, time.perf_counter_ns()

    async def _submit_split(self, inputs: Arrays, rows: int, parts: int) -> tuple[Arrays, Timing]:
        t_enq = time.perf_counter_ns()
        spans = list(itertools.pairwise(rows * i // parts for i in range(parts + 1)))
        ran = await asyncio.gather(
            *(self._in_slot({k: v[a:b] for k, v in inputs.items()}) for a, b in spans)
        )
        outs = [out for out, _, _ in ran]
        if not all(
            v.ndim and v.shape[0] == b - a
            for out, (a, b) in zip(outs, spans, strict=True)
            for v in out.values()
        ):  # an output without a batch axis cannot be joined: run whole from now on
            self.split = False
            return await self._submit_direct(inputs)
        out = {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
        t0, t1 = min(r[1] for r in ran), max(r[2] for r in ran)
        return out, Timing(t0 - t_enq, t1 - t0, rows)

    def _call(self, inputs: Arrays, run: Callable[[Arrays], Arrays] | None = None) -> Arrays:
        try:
            return (run or self._run)(inputs)
        except ModelportError:
            raise
        except Exception as e:  # a runtime bug must not kill the server
            raise ModelExecutionError(f"model failed: {type(e).__name__}: {e}") from e

    # ---------------------------------------------------------------- batched

    async def _submit_batched(self, inputs: Arrays) -> tuple[Arrays, Timing]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[Arrays, Timing]] = loop.create_future()
        key = tuple(sorted((k, v.dtype.str, v.shape[1:]) for k, v in inputs.items()))
        self._queue.append(_Pending(inputs, _rows(inputs), key, fut))
        if self._collector is None or self._collector.done():
            self._wakeup = asyncio.Event()
            self._collector = loop.create_task(self._collect())
        assert self._wakeup is not None
        self._wakeup.set()
        return await fut

    async def _collect(self) -> None:
        """Form batches while requests are queued; exits when the queue is empty.

        It never waits for the batches it started: between finding the queue empty and
        returning there is no await, so a request queued later always finds the
        collector done and starts a new one (no request is left behind).
        """
        cfg = self.config
        delay = cfg.max_queue_delay_us / 1e6
        tasks = self._running
        while self._queue:
            await self._slots.acquire()
            if not self._queue:
                self._slots.release()
                break
            deadline = self._queue[0].enqueued / 1e9 + delay
            # wait for more requests until full, a preferred size, or the delay passes
            while (rows := self._queued_rows()) < cfg.max_batch_size and rows not in (
                cfg.preferred_batch_sizes
            ):
                remaining = deadline - time.perf_counter_ns() / 1e9
                if remaining <= 0:
                    break
                assert self._wakeup is not None
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
            batch = self._take_batch()
            self._busy += 1
            task = asyncio.get_running_loop().create_task(self._execute(batch))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    def _queued_rows(self) -> int:
        key = self._queue[0].key
        return sum(p.rows for p in self._queue if p.key == key)

    def _take_batch(self) -> list[_Pending]:
        """Requests compatible with the oldest one, up to max_batch_size rows, FIFO.

        The limit is also this batch's share of the queued rows among the idle instances
        (this one included), so that they all get work.
        """
        limit = self.config.max_batch_size
        idle = self.config.instances - self._busy
        if idle > 1:
            limit = min(limit, -(-self._queued_rows() // idle))
        first = self._queue.popleft()
        batch, rows = [first], first.rows
        keep: deque[_Pending] = deque()
        while self._queue:
            p = self._queue.popleft()
            if p.key == first.key and rows + p.rows <= limit:
                batch.append(p)
                rows += p.rows
            else:
                keep.append(p)
        self._queue.extendleft(reversed(keep))
        return batch

    async def _execute(self, batch: list[_Pending]) -> None:
        try:
            loop = asyncio.get_running_loop()
            t0 = time.perf_counter_ns()
            if len(batch) == 1:
                merged = batch[0].inputs
            else:
                merged = {k: np.concatenate([p.inputs[k] for p in batch]) for k in batch[0].inputs}
            try:
                out = await loop.run_in_executor(self._pool, self._call, merged)
            except ModelportError as e:
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(e)
                return
            t1 = time.perf_counter_ns()
            rows = sum(p.rows for p in batch)
            if self._on_batch:
                self._on_batch(rows, t1 - t0)
            offset = 0
            for p in batch:
                part = {
                    k: (v[offset : offset + p.rows] if v.ndim and v.shape[0] == rows else v)
                    for k, v in out.items()
                }
                offset += p.rows
                if not p.future.done():
                    p.future.set_result((part, Timing(t0 - p.enqueued, t1 - t0, rows)))
        finally:
            self._busy -= 1
            self._slots.release()


def _same_rows(inputs: Arrays) -> bool:
    """Every input has the same first dimension: rows that can be merged or cut.

    A request whose inputs differ there (a signature's variable first dimension that is
    not a batch axis) runs whole and alone.
    """
    rows = -1
    for v in inputs.values():
        if not v.ndim or rows not in (-1, v.shape[0]):
            return False
        rows = v.shape[0]
    return True


def _rows(inputs: Arrays) -> int:
    for v in inputs.values():
        return int(v.shape[0]) if v.ndim else 1
    return 0
