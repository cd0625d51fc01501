"""The job queue: requests become jobs with ids, run by a bounded pool of workers in order.

One worker per device by default, because two samplers on one device only slow each other down.
A job is cancelled through a flag that the sampler's step callback checks, so a running job stops
at its next step; a queued one never starts. Finished jobs are kept in a bounded history, so
memory stays flat however many requests come in.
"""

from __future__ import annotations

import io
import itertools
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from latentkit.pipeline import Progress

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)


class Cancelled(Exception):
    """Raised inside the step callback to unwind a sampler whose job was cancelled."""


class QueueFull(Exception):
    """More jobs waiting than the server accepts; answered with 429."""


@dataclass
class Job:
    id: str
    kind: str
    run: Callable[[Job], dict[str, Any]] = field(repr=False)
    status: str = QUEUED
    step: int = 0
    total: int = 0
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    preview_png: bytes | None = field(default=None, repr=False)
    preview_step: int = -1
    version: int = 0
    created: float = field(default_factory=time.time)
    cancel_requested: bool = False
    notices: list[str] = field(default_factory=list)
    future: Future = field(default_factory=Future, repr=False)

    def public(self) -> dict[str, Any]:
        """What GET /jobs/{id} and the event stream send."""
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "step": self.step,
            "total": self.total,
            "preview_step": self.preview_step,
            "result": self.result,
            "error": self.error,
            "notices": self.notices,
        }

    def touch(self) -> None:
        self.version += 1

    def progress_callback(self, preview_every: int) -> Callable[[Progress], None]:
        """The sampler's callback: checks the cancel flag, records the step, and every
        `preview_every` steps (and at the last) a PNG of the latent preview."""

        def callback(progress: Progress) -> None:
            self._step(progress.step, progress.total)
            if progress.step % preview_every == 0 or self.step == self.total:
                buf = io.BytesIO()
                progress.preview[0].save(buf, format="PNG")
                self.preview_png, self.preview_step = buf.getvalue(), self.step
            self.touch()

        return callback

    def _step(self, step: int, total: int) -> None:
        if self.cancel_requested:
            raise Cancelled
        self.step, self.total = step + 1, total


class JobQueue:
    """FIFO queue with `workers` threads; `submit` answers at once with the job."""

    def __init__(
        self,
        workers: int = 1,
        max_waiting: int = 256,
        keep: int = 500,
        on_error: Callable[[BaseException], dict[str, Any]] | None = None,
    ) -> None:
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.lock = threading.Lock()
        self.waiting: queue.Queue[Job | None] = queue.Queue()
        self.max_waiting = max_waiting
        self.keep = keep
        self.on_error = on_error or (lambda e: {"error": str(e), "field": None})
        self.ids = itertools.count(1)
        self.threads = [
            threading.Thread(target=self._work, name=f"latentkit-job-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for t in self.threads:
            t.start()

    def submit(
        self, kind: str, run: Callable[[Job], dict[str, Any]], notices: list[str] | None = None
    ) -> Job:
        """Queue `run`; `notices` (what the server changed about the request) ride along."""
        with self.lock:
            if self.waiting.qsize() >= self.max_waiting:
                raise QueueFull(f"{self.waiting.qsize()} jobs are waiting; try again later")
            job = Job(id=f"job-{next(self.ids)}-{kind}", kind=kind, run=run)
            job.notices = list(notices or [])
            self.jobs[job.id] = job
            self._forget_old()
        self.waiting.put(job)
        return job

    def get(self, job_id: str) -> Job | None:
        with self.lock:
            return self.jobs.get(job_id)

    def list(self) -> list[Job]:
        with self.lock:
            return list(self.jobs.values())

    def active(self) -> list[Job]:
        """Queued and running jobs, oldest first: what a page that reloads may reattach to."""
        return [j for j in self.list() if j.status not in FINISHED]

    def cancel(self, job: Job) -> Job:
        """Queued: never runs. Running: stops at its next sampler step. Finished: unchanged."""
        with self.lock:
            if job.status in FINISHED:
                return job
            job.cancel_requested = True
            if job.status == QUEUED:
                self._finish(job, CANCELLED)
        return job

    def close(self) -> None:
        """Stop the workers after the jobs they are running (queued ones are cancelled)."""
        for job in self.list():
            self.cancel(job)
        for _ in self.threads:
            self.waiting.put(None)
        for t in self.threads:
            t.join(timeout=10)

    def _forget_old(self) -> None:
        """Drop the oldest finished jobs beyond `keep`; waiting and running ones stay."""
        excess = len(self.jobs) - self.keep
        for job_id in [j.id for j in self.jobs.values() if j.status in FINISHED][: max(0, excess)]:
            del self.jobs[job_id]

    def _finish(self, job: Job, status: str) -> None:
        job.status = status
        job.preview_png = None if status != DONE else job.preview_png
        job.touch()
        if not job.future.done():
            job.future.set_result(job)

    def _work(self) -> None:
        while True:
            job = self.waiting.get()
            if job is None:
                return
            with self.lock:
                if job.status != QUEUED:
                    continue
                job.status = RUNNING
                job.touch()
            try:
                result = job.run(job)
            except Cancelled:
                with self.lock:
                    self._finish(job, CANCELLED)
                continue
            except Exception as e:  # every failure becomes the job's error, never a dead worker
                job.error = self.on_error(e)
                with self.lock:
                    self._finish(job, FAILED)
                continue
            job.result = result
            with self.lock:
                self._finish(job, DONE)  # it finished: a late cancel does not discard it
