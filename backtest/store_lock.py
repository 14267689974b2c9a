"""The store-wide writer lock: one writer at a time merges into a store.

A write reads a partition, merges the new rows and replaces the file; two writers doing this at
once on the same partition lose the rows of whichever renamed first. Every merge-write
(:meth:`backtest.store.Store.write`, ``write_tiers``) therefore holds this lock across its
read-merge-replace. Readers never take it (a replace is atomic, so they see the old or the new
file).

* **Local folder**: ``fcntl.flock`` on ``{root}/.writer.lock``. The kernel releases the lock
  when its holder exits, also on SIGKILL, so a killed writer never blocks the next one.
* **S3**: a lock object ``{prefix}/.writer.lock`` created with a conditional put
  (``If-None-Match: *``, supported by AWS S3 since 2024 and by moto). It is a lease: it holds
  its holder's id and an expiry (UTC ms), renewed by a heartbeat thread while the lock is held;
  a lease whose expiry has passed (a killed writer) is taken over by deleting it conditionally
  (``If-Match`` on its ETag) and creating a new one.

A writer that finds the lock taken says so on stderr (one line) and waits up to
``BACKTEST_LOCK_TIMEOUT`` seconds (default :data:`DEFAULT_TIMEOUT_S`); then it gives up with a
:class:`~backtest.errors.StoreLockError` naming the lock and the fix (exit 2).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import uuid
from typing import Any, Callable

from backtest.errors import StoreLockError, UserError

LOCK_NAME = ".writer.lock"
#: seconds a writer waits for the lock before it gives up (assumption: a merge-write of one
#: download page or one CSV takes well under a minute; a longer wait means a stuck writer)
DEFAULT_TIMEOUT_S = 300.0
#: seconds an S3 lease lasts without renewal (renewed every third of it while held)
DEFAULT_LEASE_S = 60.0
#: seconds between two attempts to take a lock that is held
POLL_S = 0.05


def lock_timeout_s() -> float:
    """``$BACKTEST_LOCK_TIMEOUT`` (seconds, >= 0), else :data:`DEFAULT_TIMEOUT_S`."""
    raw = os.environ.get("BACKTEST_LOCK_TIMEOUT")
    if raw is None or raw.strip() == "":
        return DEFAULT_TIMEOUT_S
    try:
        v = float(raw)
    except ValueError:
        v = -1.0
    if not (v >= 0 and v < float("inf")):
        raise StoreLockError(f"BACKTEST_LOCK_TIMEOUT={raw!r} is not a number of seconds >= 0; e.g. BACKTEST_LOCK_TIMEOUT=300")
    return v


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class _Reentrant:
    """Counts nested acquisitions in this process: a write inside a write takes the lock once."""

    def __init__(self) -> None:
        self._depth = 0
        self._mutex = threading.RLock()

    def __enter__(self):
        self._mutex.acquire()
        try:
            if self._depth == 0:
                self._acquire()
            self._depth += 1
        except BaseException:
            self._mutex.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._depth -= 1
            if self._depth == 0:
                self._release()
        finally:
            self._mutex.release()

    def _acquire(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _release(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


_ANNOUNCED: set[str] = set()


def _wait_loop(try_once: Callable[[], bool], holder: Callable[[], str], where: str, timeout: float, say: Callable[[str], None]) -> None:
    """Call ``try_once`` until it returns True; one line on stderr when it first fails, a
    :class:`StoreLockError` after ``timeout`` seconds."""
    if try_once():
        return
    if where not in _ANNOUNCED:  # one line per lock and process, not one per write of a long download
        _ANNOUNCED.add(where)
        say(f"waiting for the store's writer lock {where} (held by {holder()}); up to {timeout:g} s")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(POLL_S)
        if try_once():
            return
    raise StoreLockError(
        f"the store's writer lock {where} is still held by {holder()} after {timeout:g} s; "
        "wait for the other writer to finish (or stop it), or raise BACKTEST_LOCK_TIMEOUT"
    )


class LocalLock(_Reentrant):
    """``flock`` on ``{root}/.writer.lock`` (the root folder is created if missing)."""

    def __init__(self, root: str, *, timeout: float | None = None, say: Callable[[str], None] = _say):
        super().__init__()
        self.path = os.path.join(root, LOCK_NAME)
        self.root = root
        self.timeout = timeout
        self.say = say
        self._fd: int | None = None

    def _acquire(self) -> None:
        import fcntl

        os.makedirs(self.root, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)

        def try_once() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False

        def holder() -> str:
            try:
                with open(self.path) as f:
                    text = f.read().strip()
                return text or "another process"
            except OSError:
                return "another process"

        try:
            _wait_loop(try_once, holder, self.path, lock_timeout_s() if self.timeout is None else self.timeout, self.say)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _release(self) -> None:
        import fcntl

        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class S3Lock(_Reentrant):
    """A lease object created with a conditional put (``IfNoneMatch="*"``)."""

    def __init__(self, s3: Any, bucket: str, key: str, *, timeout: float | None = None, lease_s: float = DEFAULT_LEASE_S,
                 say: Callable[[str], None] = _say):
        super().__init__()
        self.s3, self.bucket, self.key = s3, bucket, key
        self.where = f"s3://{bucket}/{key}"
        self.timeout = timeout
        self.lease_s = lease_s
        self.say = say
        self.owner = f"pid {os.getpid()} on {socket.gethostname()} ({uuid.uuid4().hex[:8]})"
        self._etag: str | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._last_holder = "another writer"

    def _body(self) -> bytes:
        return json.dumps({"owner": self.owner, "expires_ms": int(time.time() * 1000 + self.lease_s * 1000)}).encode()

    @staticmethod
    def _code(e: BaseException) -> str:
        resp = getattr(e, "response", None)
        return str((resp or {}).get("Error", {}).get("Code", "")) if isinstance(resp, dict) else ""

    def _try_once(self) -> bool:
        try:
            r = self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=self._body(), IfNoneMatch="*")
            self._etag = r.get("ETag")
            return True
        except Exception as e:  # noqa: BLE001
            if self._code(e) not in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                raise
        # held: take it over if its lease has expired
        try:
            obj = self.s3.get_object(Bucket=self.bucket, Key=self.key)
            info = json.loads(obj["Body"].read() or b"{}")
            etag = obj.get("ETag")
        except Exception as e:  # noqa: BLE001
            if self._code(e) in ("NoSuchKey", "404"):
                return False  # released meanwhile: the next attempt takes it
            raise
        self._last_holder = str(info.get("owner", "another writer"))
        if int(info.get("expires_ms", 0)) < time.time() * 1000:
            try:
                self.s3.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=etag)
            except Exception as e:  # noqa: BLE001  (someone else took it over first)
                if self._code(e) not in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                    raise
        return False

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                r = self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=self._body(), IfMatch=self._etag)
                self._etag = r.get("ETag")
            except Exception:  # noqa: BLE001  (the next beat retries; the lease still runs)
                pass

    def _acquire(self) -> None:
        try:
            _wait_loop(self._try_once, lambda: self._last_holder, self.where,
                       lock_timeout_s() if self.timeout is None else self.timeout, self.say)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001  (no connection, no permission...)
            why = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise StoreLockError(f"cannot take the store's writer lock {self.where} ({why}); check the bucket, credentials and AWS_ENDPOINT_URL") from None
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="s3-lock-heartbeat", daemon=True)
        self._beat.start()

    def _release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self._etag)
        except Exception:  # noqa: BLE001  (lost the lease already: it expires by itself)
            pass
        self._etag = None
