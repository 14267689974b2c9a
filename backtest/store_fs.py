"""The store's file systems: a local folder (:class:`LocalFS`) or an S3 bucket prefix
(:class:`S3FS`, boto3, bounded timeouts), behind the small interface :class:`backtest.store.Store`
uses: list, read, atomic write, remove, lock, and the target a polars scan reads. Paths are paths,
never glob patterns; credentials and the endpoint come from the usual ``AWS_*`` variables.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from backtest.errors import StoreError
from backtest.store import _short


#: seconds to open a connection to an S3 endpoint, and to wait for each answer (assumption: a
#: healthy endpoint answers a partition-sized GET or PUT in seconds); attempts per call. A
#: stopped endpoint thus fails in about attempts x (connect + read) seconds, not minutes.
#: ``$BACKTEST_S3_TIMEOUT`` (seconds) overrides the read timeout.
S3_CONNECT_TIMEOUT_S = 5.0
S3_READ_TIMEOUT_S = 20.0
S3_ATTEMPTS = 2


def s3_timeouts() -> tuple[float, float, int]:
    """(connect timeout s, read timeout s, attempts) of every S3 call."""
    raw = os.environ.get("BACKTEST_S3_TIMEOUT", "").strip()
    if not raw:
        return S3_CONNECT_TIMEOUT_S, S3_READ_TIMEOUT_S, S3_ATTEMPTS
    try:
        v = float(raw)
    except ValueError:
        v = -1.0
    if not 0 < v < 86_400:
        raise StoreError(f"BACKTEST_S3_TIMEOUT={raw!r} is not a number of seconds between 0 and 86400; e.g. BACKTEST_S3_TIMEOUT=20")
    return min(S3_CONNECT_TIMEOUT_S, v), v, S3_ATTEMPTS


class LocalFS:
    def __init__(self, root: str):
        self.root = str(Path(root).expanduser())
        p = Path(self.root)
        if p.exists() and not p.is_dir():
            raise StoreError(f"store path {self.root} is a file, not a folder; pass --store with a folder path")

    def join(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def list(self, prefix_parts: list[str], name: str) -> list[str]:
        """Files called ``name`` below root/prefix_parts (prefix parts may be glob patterns; the
        root is a path, never a pattern: ``/tmp/st[1]`` is the folder of that name)."""
        import fnmatch

        out = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel = os.path.relpath(dirpath, self.root)
            parts = [] if rel == "." else rel.split(os.sep)
            k = min(len(parts), len(prefix_parts))
            if not all(fnmatch.fnmatchcase(a, b) for a, b in zip(parts[:k], prefix_parts[:k])):
                dirnames[:] = []
                continue
            if len(parts) >= len(prefix_parts) and name in filenames:
                out.append(os.path.join(dirpath, name))
        return sorted(out)

    def leftover_tmp(self) -> list[str]:
        """Temporary files a killed or failed writer left behind (``.NAME.PID.tmp``)."""
        out = []
        for dirpath, _dirs, filenames in os.walk(self.root):
            out += [os.path.join(dirpath, f) for f in filenames if f.startswith(".") and f.endswith(".tmp")]
        return sorted(out)

    def remove(self, path: str) -> None:
        os.unlink(path)

    def lock(self):
        from backtest.store_lock import LocalLock

        if self._lock is None:
            self._lock = LocalLock(self.root)
        return self._lock

    _lock = None

    def read_bytes(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def write_atomic(self, path: str, data: bytes) -> None:
        """Write ``data`` atomically and durably (:func:`backtest.paths.write_atomic`)."""
        from backtest.paths import write_atomic

        d = os.path.dirname(path)
        try:
            os.makedirs(d, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise StoreError(f"cannot create folder {d}: a file stands in its way") from None
        write_atomic(path, lambda tmp: tmp.write_bytes(data))

    def scan_target(self, path: str) -> str:
        return path

    storage_options: dict | None = None


class S3FS:
    """S3 (or S3-compatible) root via boto3; a PUT replaces an object atomically."""

    def __init__(self, url: str):
        m = re.match(r"^s3://([^/]+)/?(.*)$", url)
        if not m:
            raise StoreError(f"bad S3 URL {url!r}; use s3://bucket/prefix")
        self.bucket, self.prefix = m.group(1), m.group(2).strip("/")
        self.root = url.rstrip("/")
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("BACKTEST_S3_ENDPOINT")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.storage_options = {"aws_region": region}
        if endpoint:
            self.storage_options["aws_endpoint_url"] = endpoint
            if endpoint.startswith("http://"):
                self.storage_options["aws_allow_http"] = "true"
        for env, key in (("AWS_ACCESS_KEY_ID", "aws_access_key_id"), ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key")):
            if os.environ.get(env):
                self.storage_options[key] = os.environ[env]
        try:
            import boto3
        except ImportError:  # pragma: no cover - boto3 is a dependency
            raise StoreError("an s3:// store needs boto3; pip install boto3") from None
        from botocore.config import Config

        # few, quick retries: an unreachable or silent endpoint must fail within seconds, not minutes
        connect_s, read_s, attempts = s3_timeouts()
        cfg = Config(connect_timeout=connect_s, read_timeout=read_s, retries={"max_attempts": attempts, "mode": "standard"})
        self._s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region, config=cfg)
        # the same bounds for polars' own object-store reads (scan_parquet)
        self.storage_options.update({"connect_timeout": f"{connect_s:g}s", "timeout": f"{read_s * attempts:g}s", "max_retries": attempts - 1})
        self._lock = None

    def _key(self, path: str) -> str:
        return path[len(f"s3://{self.bucket}/"):]

    def join(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def _call(self, what: str, fn, /, **kw):
        """Run one boto3 call; any failure becomes a one-line StoreError naming the store."""
        try:
            return fn(**kw)
        except Exception as e:
            raise self._error(what, e) from None

    def _error(self, what: str, e: BaseException) -> StoreError:
        return StoreError(f"S3 store {self.root}: cannot {what} ({_short(e)}); check the bucket, credentials and AWS_ENDPOINT_URL")

    def exists(self, path: str) -> bool:
        """True if the object exists; False only on a 404. Any other failure (403, 5xx, no
        connection) raises: a merge-write must never take an unreadable object for a missing one."""
        try:
            self._s3.head_object(Bucket=self.bucket, Key=self._key(path))
            return True
        except Exception as e:
            code = str(getattr(e, "response", {}).get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._error(f"check {path}", e) from None

    def list(self, prefix_parts: list[str], name: str) -> list[str]:
        import fnmatch

        literal = []
        for part in prefix_parts:
            if any(c in part for c in "*?["):
                break
            literal.append(part)
        prefix = "/".join([p for p in [self.prefix, *literal] if p])
        pattern = "/".join([p for p in [self.prefix, *prefix_parts] if p]) + "/*"
        def keys() -> list[str]:
            out = []
            for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    if key.rsplit("/", 1)[-1] == name and fnmatch.fnmatch(key, pattern):
                        out.append(f"s3://{self.bucket}/{key}")
            return out

        return sorted(self._call("list objects", keys))

    def read_bytes(self, path: str) -> bytes:
        return self._call(f"read {path}", lambda: self._s3.get_object(Bucket=self.bucket, Key=self._key(path))["Body"].read())

    def write_atomic(self, path: str, data: bytes) -> None:
        self._call(f"write {path}", self._s3.put_object, Bucket=self.bucket, Key=self._key(path), Body=data)

    def leftover_tmp(self) -> list[str]:
        return []  # a PUT is atomic: S3 has no temporary files

    def remove(self, path: str) -> None:
        self._call(f"delete {path}", self._s3.delete_object, Bucket=self.bucket, Key=self._key(path))

    def lock(self):
        from backtest.store_lock import LOCK_NAME, S3Lock

        if self._lock is None:
            key = "/".join(p for p in (self.prefix, LOCK_NAME) if p)
            self._lock = S3Lock(self._s3, self.bucket, key)
        return self._lock

    def scan_target(self, path: str) -> str:
        return path
