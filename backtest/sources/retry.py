"""Bounded exponential backoff for exchange and archive requests.

Temporary faults (rate limits 429/418 raised by ccxt as ``DDoSProtection``, 5xx as
``OperationFailed``/``ExchangeNotAvailable``, timeouts, connection resets, a response body cut off
midway) are retried with exponential backoff and full jitter, capped, honouring a ``Retry-After``
header when the server sends one (itself capped, so a hostile header cannot stall a run).
Permanent faults (bad symbol, not supported, authentication, bad request) raise
:class:`PermanentFault` at once. When the retries are spent :class:`RetriesExhausted` is raised.

Settings come from (in order) the ``retry`` table of ``--ccxt-config``, the environment
(``BACKTEST_RETRY_MAX``, ``BACKTEST_RETRY_BASE``, ``BACKTEST_RETRY_CAP``,
``BACKTEST_RETRY_AFTER_CAP``, all seconds except the count), then the defaults below.
"""

from __future__ import annotations

import email.utils
import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from backtest.errors import UserError

T = TypeVar("T")


class TemporaryFault(Exception):
    """A fault worth retrying (raised by our own checks, e.g. a truncated body)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PermanentFault(UserError):
    """A fault that retrying cannot fix (bad symbol, unsupported, authentication...)."""


class RetriesExhausted(Exception):
    """Every attempt failed with a temporary fault."""

    def __init__(self, message: str, attempts: int, last: BaseException | None):
        super().__init__(message)
        self.attempts = attempts
        self.last = last


@dataclass
class RetryPolicy:
    max_retries: int = 8  # retries after the first attempt
    base: float = 1.0  # first backoff, seconds
    cap: float = 60.0  # longest computed backoff, seconds
    retry_after_cap: float = 120.0  # longest honoured Retry-After, seconds
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    @classmethod
    def from_settings(cls, settings: dict[str, Any] | None = None) -> "RetryPolicy":
        """A policy from the ``retry`` table of --ccxt-config, then the environment, then defaults.

        Every value is checked (UserError, one line naming the setting): ``max_retries`` a whole
        number 0..1000, ``base`` and ``cap`` seconds in (0, 3600], ``retry_after_cap`` seconds in
        [0, 3600]; unknown keys are refused, so a typo does not silently fall back to a default.
        """
        s = dict(settings or {})
        known = {"max_retries": "BACKTEST_RETRY_MAX", "base": "BACKTEST_RETRY_BASE", "cap": "BACKTEST_RETRY_CAP",
                 "retry_after_cap": "BACKTEST_RETRY_AFTER_CAP"}
        unknown = sorted(set(s) - set(known))
        if unknown:
            raise UserError(f"unknown retry setting(s) {', '.join(map(str, unknown))} in --ccxt-config; use {', '.join(known)}")
        values: dict[str, float] = {}
        for key, env in known.items():
            if key in s:
                raw, where = s[key], f"retry.{key} in --ccxt-config"
            elif os.environ.get(env):
                raw, where = os.environ[env], f"${env}"
            else:
                continue
            values[key] = _check_setting(key, raw, where)
        return cls(**{k: (int(v) if k == "max_retries" else v) for k, v in values.items()})

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        backoff = min(self.cap, self.base * (2 ** (attempt - 1)))
        backoff = backoff * (0.5 + random.random() / 2)  # jitter, never below half
        if retry_after is not None and retry_after >= 0:
            return max(backoff, min(retry_after, self.retry_after_cap))
        return backoff


#: (lowest, lowest allowed?, highest) of each retry setting; seconds except max_retries
_BOUNDS = {"max_retries": (0, True, 1000), "base": (0.0, False, 3600.0), "cap": (0.0, False, 3600.0), "retry_after_cap": (0.0, True, 3600.0)}


def _check_setting(key: str, raw: Any, where: str) -> float:
    """One retry setting as a number within its bounds, else UserError naming it and the fix."""
    lo, lo_ok, hi = _BOUNDS[key]
    whole = key == "max_retries"
    want = f"a whole number from {lo} to {hi}" if whole else f"a number of seconds {'from' if lo_ok else 'above'} {lo:g} {'to' if lo_ok else 'up to'} {hi:g}"
    try:
        if isinstance(raw, bool):
            raise ValueError
        v = float(raw.strip()) if isinstance(raw, str) else float(raw)
    except (TypeError, ValueError):
        raise UserError(f"{where} is {raw!r}; it must be {want}") from None
    ok = math.isfinite(v) and (v >= lo if lo_ok else v > lo) and v <= hi and (not whole or v == int(v))
    if not ok:
        raise UserError(f"{where} is {raw!r}; it must be {want}")
    return v


def parse_retry_after(value: Any) -> float | None:
    """Seconds from a ``Retry-After`` header value (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        dt = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if dt is None:
        return None
    return max(0.0, dt.timestamp() - time.time())


def call_with_retry(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy,
    classify: Callable[[BaseException], str],
    retry_after: Callable[[BaseException], float | None] = lambda e: getattr(e, "retry_after", None),
    what: str = "request",
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """Call ``fn`` until it succeeds, a permanent fault occurs, or retries run out.

    ``classify(exc)`` returns ``"temporary"``, ``"permanent"`` or ``"raise"`` (not ours: re-raise
    unchanged). Permanent faults become :class:`PermanentFault` with a one-line message.
    """
    attempt = 0
    while True:
        try:
            return fn()
        except BaseException as exc:  # noqa: BLE001 - classified below
            if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
                raise
            kind = classify(exc)
            if kind == "permanent":
                raise PermanentFault(f"{what} failed: {_one_line(exc)}") from exc
            if kind != "temporary":
                raise
            attempt += 1
            if attempt > policy.max_retries:
                raise RetriesExhausted(
                    f"{what} still failing after {attempt} attempts: {_one_line(exc)}", attempt, exc
                ) from exc
            wait = policy.delay(attempt, retry_after(exc))
            if on_retry:
                on_retry(attempt, exc, wait)
            policy.sleep(wait)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else ""
    name = type(exc).__name__
    msg = msg[:300]
    return f"{name}: {msg}" if msg else name
