"""A writer process for the lock tests: ``python -m tests.fakes.store_writer ROOT START N CHUNK SEED``
merges N synthetic 1m bars from START (UTC ms) into the store at ROOT, CHUNK rows per write, in
an order shuffled by SEED (many small overlapping writes make races likely without the lock).
Bar values are a function of ts only, so the union of several writers is one exact table."""

from __future__ import annotations

import random
import sys

import polars as pl


def bars_for(ts: list[int]) -> pl.DataFrame:
    """Synthetic 1m bars (test data, not market data): every value derived from ts."""
    close = [100.0 + (t // 60_000) % 997 for t in ts]
    return pl.DataFrame({"ts": ts, "symbol": ["BTC/USDT:USDT"] * len(ts), "open": close, "high": [c + 1 for c in close],
                         "low": [c - 1 for c in close], "close": close, "volume": [1.0] * len(ts)})


def main(root: str, start: int, n: int, chunk: int, seed: int) -> None:
    from backtest.store import Store

    st = Store(root)
    ts = [start + i * 60_000 for i in range(n)]
    pieces = [ts[i:i + chunk] for i in range(0, n, chunk)]
    random.Random(seed).shuffle(pieces)
    for piece in pieces:
        st.write("ohlcv", bars_for(piece), exchange="binanceusdm", timeframe="1m")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
