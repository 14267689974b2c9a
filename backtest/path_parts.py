"""Identifiers that become parts of a store path (exchange, symbol, dataset, timeframe), checked in
one place before any path is built from them.

A part must be non-empty, must not be ``.`` or ``..`` or start with a dot (hidden files, and
``..`` climbs out of the hive layout), and must not hold a path separator, ``=``, a glob
character (``* ? [ ]``) or a control character. Symbols are checked after
:func:`backtest.store.safe_symbol` maps them to their path form, which keeps only letters,
digits, ``.`` and ``-``; exchange ids are ccxt ids (``binanceusdm``, ``okx``) and get the same
rule.
"""

from __future__ import annotations

import re

from backtest.errors import StoreError

_BAD_CHARS = re.compile(r"[/\\=*?\[\]\x00-\x1f\x7f]")


def check_part(kind: str, value: object, *, option: str | None = None, given: object = None) -> str:
    """Return ``value`` if it is a safe path part, else raise :class:`StoreError` (one line).

    ``kind`` names what it is (``exchange``, ``symbol``...), ``option`` the command-line option
    that gave it (default ``--{kind}``), ``given`` what the user typed when ``value`` is its path
    form (a symbol)."""
    opt = option or f"--{kind}"
    shown = value if given is None else given
    if not isinstance(value, str) or not value.strip():
        raise StoreError(f"{kind} is empty; give {opt} a name such as {_EXAMPLES.get(kind, 'x')}")
    if value != value.strip():
        raise StoreError(f"{kind} {shown!r} has leading or trailing spaces; give {opt} without them")
    if value in (".", "..") or value.startswith(".") or ".." in value or _BAD_CHARS.search(value):
        raise StoreError(
            f"{kind} {shown!r} cannot be part of a store path (no '/', '\\', '..', '=', '*', '?', '[', ']' or a leading dot); "
            f"give {opt} a plain name such as {_EXAMPLES.get(kind, 'x')}"
        )
    return value


_EXAMPLES = {"exchange": "binanceusdm", "symbol": "BTC/USDT:USDT", "dataset": "ohlcv", "timeframe": "1m"}
