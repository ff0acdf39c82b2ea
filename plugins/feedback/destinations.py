"""Where feedback plays: one thread and one bounded queue per destination, so a slow speaker delays only its own room.

A destination is this machine's output (one, whatever the site it plays for) or one remote site reached
through another plugin's speaker (a Rhasspy satellite, whose ``playFinished`` may take the sound's length
+ 3 s, or never come).  Within a destination jobs run in the order they came, each to its end (a chime
and its spoken answer are one job), so one command's answer is never interleaved with the next one's;
destinations run side by side.  A queue holds at most ``limit`` jobs waiting: one more drops the oldest
waiting job (its ``skip`` runs instead, and a warning names it, at most one line per destination every
``LOG_EVERY_S``); a job still playing after ``STUCK_AFTER_S`` when another comes is one warning too.
A destination's thread is a daemon thread that ends after ``IDLE_EXIT_S`` without
work and starts again with the next job, so sites that went away cost nothing.

Written here rather than with :class:`concurrent.futures.ThreadPoolExecutor`: its queue is unbounded and
its threads are joined at interpreter exit, so a satellite that never answers would hold up vcd's exit.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

_LOGGER = logging.getLogger(__name__)

QUEUE_LIMIT = 8  # jobs waiting per destination; one more drops the oldest waiting one
IDLE_EXIT_S = 30.0  # a destination's thread ends after this long without work
LOG_EVERY_S = 10.0  # drops at one destination: at most one warning per this many seconds
STUCK_AFTER_S = 30.0  # a job playing this long when the next one comes is reported (a hung output device)


@dataclass(frozen=True)
class Job:
    """One thing to play at a destination, from start to end.

    :param what: for log lines, e.g. ``"recognized sound + answer 'Turned on the kitchen light'"``.
    :param run: plays it (on the destination's thread; may block while it plays).
    :param skip: called instead of ``run`` when the job is dropped (queue overflow, shutdown), e.g. to
        report a ``vcd_say`` request as done; None: nothing to report.
    """

    what: str
    run: Callable[[], None]
    skip: Callable[[], None] | None = None

    def skipped(self) -> None:
        if self.skip is not None:
            try:
                self.skip()
            except Exception:  # noqa: BLE001 - logged; the other jobs go on
                _LOGGER.exception("feedback: reporting %s as not played failed", self.what)


class Destination:
    """One destination's queue and (while it has work) its thread ``vcd-feedback-NAME``."""

    def __init__(self, name: str, limit: int = QUEUE_LIMIT) -> None:
        self.name = name
        self.limit = limit
        self.dropped = 0
        self._jobs: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._busy: Job | None = None  # the job playing now
        self._busy_since = 0.0  # time.monotonic() when it began
        self._stuck_warned: Job | None = None  # the job already reported as stuck
        self._closed = False
        self._next_log = 0.0

    def put(self, job: Job) -> bool:
        """Queue ``job`` (the oldest waiting one is dropped when ``limit`` wait already); False once closed."""
        dropped: Job | None = None
        stuck: tuple[Job, float, int] | None = None
        with self._cond:
            if self._closed:
                closed = True
            else:
                closed = False
                if len(self._jobs) >= self.limit:
                    dropped = self._jobs.popleft()
                    self.dropped += 1
                self._jobs.append(job)
                busy, busy_s = self._busy, time.monotonic() - self._busy_since
                if busy is not None and busy_s > STUCK_AFTER_S and self._stuck_warned is not busy:
                    self._stuck_warned = busy
                    stuck = busy, busy_s, len(self._jobs)
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=f"vcd-feedback-{self.name}", daemon=True)
                    self._thread.start()
                self._cond.notify_all()
        if closed:
            job.skipped()
            return False
        if stuck is not None:
            _LOGGER.warning("feedback: %s: still playing %s after %.0f s; %d waiting", self.name, stuck[0].what,
                            stuck[1], stuck[2])
        if dropped is not None:
            self._warn_dropped(dropped)
            dropped.skipped()
        return True

    def _warn_dropped(self, job: Job) -> None:
        now = time.monotonic()
        if now < self._next_log:
            return
        self._next_log = now + LOG_EVERY_S
        busy = self._busy.what if self._busy is not None else "?"
        _LOGGER.warning("feedback: %s: %d waiting already (still playing %s); dropped the oldest, %s "
                        "(%d dropped here so far)", self.name, self.limit, busy, job.what, self.dropped)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._closed:
                    if not self._cond.wait(IDLE_EXIT_S) and not self._jobs:
                        break
                if not self._jobs:  # idle too long, or closed: the next put starts a new thread
                    self._thread = None
                    self._cond.notify_all()
                    return
                job = self._busy = self._jobs.popleft()
                self._busy_since = time.monotonic()
            try:
                job.run()
            except Exception:  # noqa: BLE001 - one job's failure must not end the destination
                _LOGGER.exception("feedback: %s: playing %s failed", self.name, job.what)
            finally:
                with self._cond:
                    self._busy = None
                    self._cond.notify_all()

    def wait_idle(self, deadline: float) -> bool:
        """Wait until nothing waits or plays here, or ``deadline`` (``time.monotonic()``); True when idle."""
        with self._cond:
            while self._jobs or self._busy is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def close(self) -> tuple[list[Job], Job | None]:
        """Take no more jobs: (the waiting ones, now dropped and skipped; the one still playing, or None)."""
        with self._cond:
            self._closed = True
            left = list(self._jobs)
            self._jobs.clear()
            busy = self._busy
            self._cond.notify_all()
        for job in left:
            job.skipped()
        return left, busy


class Destinations:
    """The destinations by name, made on first use; :meth:`close` ends them all within a time limit."""

    def __init__(self, limit: int = QUEUE_LIMIT) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._by_name: dict[str, Destination] = {}
        self._closed = False

    def put(self, name: str, job: Job) -> bool:
        """Queue ``job`` at destination ``name``; False (and ``job.skip`` called) once closed."""
        with self._lock:
            destination = None if self._closed else self._by_name.get(name)
            if destination is None and not self._closed:
                destination = self._by_name[name] = Destination(name, self.limit)
        if destination is None:
            job.skipped()
            return False
        return destination.put(job)

    def put_and_wait(self, name: str, job: Job, timeout_s: float | None = None) -> bool:
        """Queue ``job`` at ``name`` and wait until it has run or been dropped; False when ``timeout_s`` passed first."""
        done = threading.Event()

        def run() -> None:
            try:
                job.run()
            finally:
                done.set()

        def skip() -> None:
            try:
                job.skipped()
            finally:
                done.set()

        self.put(name, Job(job.what, run, skip))
        return done.wait(timeout_s)

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every destination has played what it holds; False when ``timeout_s`` passed first."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            destinations = list(self._by_name.values())
        return all([d.wait_idle(deadline) for d in destinations])

    def close(self, finish_s: float) -> None:
        """Let what is queued play for up to ``finish_s``, then drop the rest (one line per destination).

        Returns within ``finish_s`` whatever a speaker does: a job still playing then is left to its
        daemon thread (a satellite's ``playFinished`` that never comes ends with its own timeout).
        """
        self.wait_idle(finish_s)
        with self._lock:
            self._closed = True
            destinations = list(self._by_name.values())
        for destination in destinations:
            left, busy = destination.close()
            if left or busy is not None:
                playing = f"; still playing {busy.what}" if busy is not None else ""
                _LOGGER.warning("feedback: stopping: %s: %d not played%s", destination.name, len(left), playing)
