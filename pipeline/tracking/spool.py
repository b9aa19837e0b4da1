"""An on-disk, append-only spool of tracking calls, drained in order by one background thread.

Why: logging straight to a tracking server puts the network on a training round's critical
path, and an outage longer than the client's retry window loses data or crashes the run.
Here a tracking call is one fsync'd JSON line (plus a private copy of any attached file), so
it costs a local disk write; the drain thread sends records in the order they were
submitted, retrying each without limit (capped exponential backoff), and never drops one.

Folder layout::

    records.jsonl   one record a line, each with a sequence number ``seq`` (1, 2, ...)
    files/<seq>/    the record's attached file (a copy: later changes to the source don't matter)
    cursor          {"done": d, "inflight": m}: records <= d are sent; (d, m] were being sent
    meta.json       who wrote it (the tracking URI), for ``ffm-report replay``
    rejected.jsonl  records the server refused as invalid (kept, never retried)
    lock            held (flock) by the one process draining the folder

Exactly once: MLflow appends a duplicate entry when a metric batch is sent twice, so a
re-send is not harmless. The cursor is written durably before (``inflight``) and after
(``done``) each send; after a crash only the records in ``(done, inflight]`` may have
arrived already. They, and a batch being sent again after a failed attempt (a timeout may
hide a request the server did apply), are handed to the sender with ``maybe_sent=True`` so
it can check the server before sending them again; every other record is sent once, blind.
(MLflow's client retries a request inside one call too; that is its own, rarer, duplicate.)

A sender is ``sender(records: list[dict], maybe_sent: bool) -> None``: it raises to have the
batch retried, or :class:`Rejected` when the server refused it for good (the record then
goes to ``rejected.jsonl`` instead of blocking the queue). Consecutive records with the same
``record["batch"]`` value are handed over together (up to ``max_batch``).
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import itertools
import json
import os
import shutil
import threading
import time

COMPACT_BYTES = 1 << 20  # a drained records.jsonl larger than this is truncated


class Rejected(Exception):
    """Raised by a sender: the server refused these records for good (retrying cannot help)."""


class SpoolBusy(RuntimeError):
    """Another live process (or Spool object) is draining this folder."""


class SpoolBacklog(TimeoutError):
    """``replay`` gave up waiting: ``left`` records are still in the spool."""

    def __init__(self, message: str, sent: int, left: int):
        super().__init__(message)
        self.sent, self.left = sent, left


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: str, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically and durably (tmp file, fsync, rename, fsync dir)."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path))


def _load_records(path: str) -> list[dict]:
    """The committed records of ``records.jsonl``; a torn last line (a crash mid-submit) is cut off."""
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        data = f.read()
    records, good = [], 0
    for line in data.split(b"\n")[:-1]:  # the part after the last newline never committed
        try:
            records.append(json.loads(line))
        except ValueError:
            break
        good += len(line) + 1
    if good != len(data):
        with open(path, "r+b") as f:
            f.truncate(good)
            os.fsync(f.fileno())
    return records


class Spool:
    """The spool folder ``path`` drained through ``sender`` by a daemon thread (see the module doc).

    ``meta``: saved to ``meta.json`` (e.g. the tracking URI). ``tick``: called by the drain thread
    every ``tick_s`` seconds between sends (a heartbeat); its errors are ignored."""

    def __init__(
        self,
        path: str,
        sender,
        *,
        meta: dict | None = None,
        tick=None,
        tick_s: float = 30.0,
        max_batch: int = 50,
        backoff_s: tuple[float, float] = (0.5, 30.0),
    ):
        self.path, self.sender, self.tick, self.tick_s = os.path.abspath(path), sender, tick, tick_s
        self.max_batch, self.backoff_s = max_batch, backoff_s
        os.makedirs(os.path.join(self.path, "files"), exist_ok=True)
        self._lock_fd = os.open(os.path.join(self.path, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise SpoolBusy(f"tracking spool {self.path} is being drained by another process") from None
        if meta is not None:
            _write_durably(os.path.join(self.path, "meta.json"), json.dumps(meta).encode())
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self.sent = self.retries = self.rejected = 0
        self.last_error: str | None = None
        self._recover()
        self._thread = threading.Thread(target=self._drain, name=f"spool-drain:{self.path}", daemon=True)
        self._thread.start()

    # ---- recovery -------------------------------------------------------------------------
    def _recover(self) -> None:
        """Read the cursor and the committed records; queue those not sent; drop orphaned copies."""
        cursor = {"done": 0, "inflight": 0}
        with contextlib.suppress(FileNotFoundError):
            with open(os.path.join(self.path, "cursor")) as f:
                cursor |= json.load(f)
        self._done, self._maybe_until = cursor["done"], cursor["inflight"]
        self._inflight = self._maybe_until
        records = _load_records(os.path.join(self.path, "records.jsonl"))
        self._queue = collections.deque(r for r in records if r["seq"] > self._done)
        self._next_seq = max([self._done] + [r["seq"] for r in records]) + 1
        with contextlib.suppress(FileNotFoundError):
            with open(os.path.join(self.path, "rejected.jsonl"), "rb") as f:
                self.rejected = f.read().count(b"\n")
        live = {str(r["seq"]) for r in self._queue}
        files = os.path.join(self.path, "files")
        for name in os.listdir(files):
            if name not in live:
                shutil.rmtree(os.path.join(files, name), ignore_errors=True)
        self._fd = os.open(os.path.join(self.path, "records.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _fsync_dir(self.path)

    # ---- the caller's side ----------------------------------------------------------------
    def submit(self, record: dict, attach: str | bytes | None = None, name: str | None = None) -> int:
        """Append ``record`` durably and return its sequence number. ``attach``: a file path to
        copy (or bytes to write) into ``files/<seq>/<name>``; the sender sees its absolute path in
        ``record["file"]``. Costs a local write and fsync; never waits for the network."""
        with self._cond:
            seq = self._next_seq
            record = dict(record, seq=seq)
            if attach is not None:
                record["file"] = self._attach(seq, attach, name)
            line = json.dumps(record, separators=(",", ":")).encode() + b"\n"
            os.write(self._fd, line)
            os.fsync(self._fd)
            self._next_seq += 1
            self._queue.append(record)
            self._cond.notify_all()
        return seq

    def _attach(self, seq: int, attach: str | bytes, name: str | None) -> str:
        """Copy (or write) the attachment under ``files/<seq>/``, durably; returns its relative path."""
        name = name or os.path.basename(attach if isinstance(attach, str) else "blob")
        folder = os.path.join(self.path, "files", str(seq))
        shutil.rmtree(folder, ignore_errors=True)  # an orphan left by a crash mid-submit
        os.makedirs(folder)
        dst = os.path.join(folder, name)
        if isinstance(attach, bytes):
            with open(dst, "wb") as f:
                f.write(attach)
                f.flush()
                os.fsync(f.fileno())
        else:
            shutil.copyfile(attach, dst)
            with open(dst, "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(folder)
        return os.path.join("files", str(seq), name)

    def pending(self) -> int:
        """Records submitted (or left over from an earlier process) and not yet sent."""
        with self._cond:
            return len(self._queue)

    def pending_records(self) -> list[dict]:
        """A copy of the records not yet sent, oldest first (e.g. to see what a crashed run left)."""
        with self._cond:
            return [dict(r) for r in self._queue]

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every record is sent (True) or ``timeout_s`` passes (False; None: no limit)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while self._queue:
                left = None if deadline is None else deadline - time.monotonic()
                if (left is not None and left <= 0) or not self._thread.is_alive():
                    return False
                self._cond.wait(1.0 if left is None else min(left, 1.0))
            return True

    def close(self, join_s: float = 5.0) -> None:
        """Stop the drain thread (unsent records stay on disk for a replay). A fully drained
        spool with nothing rejected is removed from disk."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(join_s)
        if self._thread.is_alive():  # stuck in a send: it still owns the folder (and the lock)
            return
        os.close(self._fd)
        if not self._queue and not self.rejected:
            shutil.rmtree(os.path.join(self.path, "files"), ignore_errors=True)
            for name in ("records.jsonl", "cursor", "meta.json", "lock"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(self.path, name))
            with contextlib.suppress(OSError):
                os.rmdir(self.path)  # only if nothing else was put there
        os.close(self._lock_fd)

    # ---- the drain thread -----------------------------------------------------------------
    def _drain(self) -> None:
        """Send the queue's head groups in order until stopped. Should the spool's own disk fail
        (full, read-only), the thread ends with ``last_error`` saying so; flush() then reports it."""
        try:
            self._drain_loop()
        except OSError as exc:
            self.last_error = f"the spool's drain thread stopped: {exc}"
            with self._cond:
                self._cond.notify_all()

    def _drain_loop(self) -> None:
        last_tick = time.monotonic()
        while True:
            group = self._next_group(last_tick)
            if group is None:
                return
            if group == "tick":
                last_tick = time.monotonic()
                self._tick()
                continue
            self._write_cursor(inflight=group[-1]["seq"])
            if not self._deliver(group):
                return

    def _next_group(self, last_tick: float):
        """The records to send next (same ``batch`` key, consecutive), "tick" when a tick is due,
        or None when stopping."""
        with self._cond:
            while True:
                if self._stop.is_set():
                    return None
                due = self.tick is not None and time.monotonic() - last_tick >= self.tick_s
                if due:
                    return "tick"
                if self._queue:
                    break
                self._cond.wait(None if self.tick is None else max(0.01, last_tick + self.tick_s - time.monotonic()))
            group = [self._queue[0]]
            key = group[0].get("batch")
            if key is not None:
                for r in itertools.islice(self._queue, 1, self.max_batch):
                    if r.get("batch") != key:
                        break
                    group.append(r)
            return group

    def _tick(self) -> None:
        try:
            self.tick()
        except Exception:  # noqa: BLE001  (a heartbeat is best effort)
            pass

    def _deliver(self, group: list[dict]) -> bool:
        """Send ``group`` until it is accepted (or rejected); False if stopped meanwhile."""
        attempt = 0
        while not self._stop.is_set():
            maybe = attempt > 0 or group[0]["seq"] <= self._maybe_until
            try:
                self.sender([self._resolved(r) for r in group], maybe)
            except Rejected as exc:
                if len(group) > 1:  # find the bad one: send one by one
                    return all(self._deliver([r]) for r in group)
                self._reject(group[0], exc)
                return True
            except Exception as exc:  # noqa: BLE001  (anything else: the server may come back)
                self.retries += 1
                self.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
                base, cap = self.backoff_s
                self._stop.wait(min(cap, base * 2 ** min(attempt, 30)))
                attempt += 1
                continue
            self._mark_done(group)
            return True
        return False

    def _resolved(self, record: dict) -> dict:
        if "file" not in record:
            return record
        return dict(record, file=os.path.join(self.path, record["file"]))

    def _reject(self, record: dict, exc: Exception) -> None:
        """Keep a refused record in ``rejected.jsonl`` (with the reason) and move on."""
        line = json.dumps({"record": record, "error": str(exc)[:2000]}).encode() + b"\n"
        with open(os.path.join(self.path, "rejected.jsonl"), "ab") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self.rejected += 1
        self.last_error = f"rejected: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        self._mark_done([record], keep_files=True)

    def _mark_done(self, group: list[dict], keep_files: bool = False) -> None:
        """Advance the durable cursor past ``group``, drop its file copies, compact when drained."""
        last = group[-1]["seq"]
        self._write_cursor(done=last)
        if not keep_files:
            for r in group:
                if "file" in r:
                    shutil.rmtree(os.path.join(self.path, "files", str(r["seq"])), ignore_errors=True)
        with self._cond:
            while self._queue and self._queue[0]["seq"] <= last:
                self._queue.popleft()
            self.sent += len(group)
            if not self._queue and os.fstat(self._fd).st_size > COMPACT_BYTES:
                os.ftruncate(self._fd, 0)  # every record <= cursor.done: nothing is lost
                os.fsync(self._fd)
            self._cond.notify_all()

    def _write_cursor(self, done: int | None = None, inflight: int | None = None) -> None:
        if done is not None:
            self._done = done
        if inflight is not None:
            self._inflight = inflight
        state = {"done": self._done, "inflight": max(self._inflight, self._done)}
        _write_durably(os.path.join(self.path, "cursor"), json.dumps(state).encode())


def read_meta(path: str) -> dict:
    """The spool's ``meta.json`` ({} if none)."""
    try:
        with open(os.path.join(path, "meta.json")) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def check_spool(path: str) -> None:
    """Raise FileNotFoundError (one line, with the fix) unless ``path`` is a spool folder."""
    if not os.path.isfile(os.path.join(path, "records.jsonl")):
        raise FileNotFoundError(
            f"{path} is not a tracking spool (no records.jsonl); pass the run's <output_dir>/tracking-spool folder"
        )


def replay(path: str, timeout_s: float | None = None, *, sender) -> int:
    """Drain a leftover spool folder (e.g. after a crash or an outage) through ``sender`` (to MLflow:
    :func:`pipeline.tracking.server.replay_spool`); returns how many records were sent. Raises
    :class:`SpoolBacklog` if ``timeout_s`` passes first (the rest stays on disk)."""
    check_spool(path)
    spool = Spool(path, sender)
    try:
        drained = spool.flush(timeout_s)
        sent, left = spool.sent, spool.pending()
    finally:
        spool.close()
    if not drained:
        raise SpoolBacklog(
            f"{left} records still in {path} after {timeout_s} s "
            f"(last error: {spool.last_error}); run the replay again",
            sent,
            left,
        )
    return sent
