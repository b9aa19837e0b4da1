"""The one lifecycle of a tracked run: training jobs, sweeps (their parent run) and studies.

:func:`tracked_run` starts the run (or takes one already open), yields a :class:`RunOutcome`,
and however the body ends, releases what the caller asks (the chip actors) and ends the run:
FINISHED on a normal exit (or the status the body chose), KILLED on KeyboardInterrupt (Ctrl-C;
the driver's resume message and exit code 130 are the CLI's), FAILED on any other exception;
the exception goes on. Ending drains the tracker's spool (events.txt included: every event is
spooled as it happens) for up to its ``flush_timeout_s`` and closes it; what did not arrive is
named in one warning line with the command that sends it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Callable, Iterator
from typing import Protocol

FINISHED, FAILED, KILLED = "FINISHED", "FAILED", "KILLED"  # MLflow's terminal run statuses


class Endable(Protocol):
    """What :func:`tracked_run` needs of a tracker: ``end`` (and ``start`` when it starts the run)."""

    def end(self, status: str = FINISHED): ...


@dataclasses.dataclass
class RunOutcome:
    """The status a normal exit ends the run with; the body may set it (a sweep with failed jobs)."""

    status: str = FINISHED


@contextlib.contextmanager
def tracked_run(
    tracker: Endable,
    params: dict | None = None,
    tags: dict | None = None,
    run_id: str | None = None,
    *,
    release: Callable[[], None] | None = None,
    prog: str = "ffm-train",
) -> Iterator[RunOutcome]:
    """Start ``tracker``'s run with ``params`` and ``tags`` (``run_id``: reopen that run to resume
    it; ``params=None``: the run is already open), run the body, then call ``release`` (if given;
    also when the start itself fails) and end the run with its status, however the body ends."""
    if params is not None:
        try:
            tracker.start(params, tags or {}, run_id=run_id)
        except BaseException:
            if release is not None:
                release()
            raise
    outcome = RunOutcome()
    try:
        yield outcome
    except KeyboardInterrupt:
        outcome.status = KILLED
        raise
    except BaseException:
        outcome.status = FAILED
        raise
    finally:
        try:
            if release is not None:
                release()
        finally:
            _end(tracker, outcome.status, prog)


def _end(tracker: Endable, status: str, prog: str) -> None:
    backlog = tracker.end(status)
    if backlog:
        print(f"{prog}: warning: {backlog}", file=sys.stderr, flush=True)
