"""A local stand-in for data.binance.vision: zip files (and .CHECKSUM files) built from real data.

``build_archive()`` returns ``{path: bytes}`` in the archive's own layout and CSV formats:

* ``daily/klines/BTCUSDT/1m/BTCUSDT-1m-2025-10-10.zip``: the 262 real 1m rows (19:38-23:59; the
  source file holds no more of that day), with the header data.binance.vision uses.
* ``monthly/markPriceKlines/BTCUSDT/1h/BTCUSDT-1h-2025-10.zip`` and daily files for 2025-09-26..30:
  real 1h mark bars.
* ``monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2025-10.zip``: the real archive rows
  (``calc_time,funding_interval_hours,last_funding_rate``, with their ms jitter).
* ``daily/metrics/BTCUSDT/BTCUSDT-metrics-2025-10-10.zip``: SYNTHETIC open interest / ratios in the
  real column layout (no real open-interest history exists in shared/data).
* ``daily/bookDepth/BTCUSDT/BTCUSDT-bookDepth-2025-10-10.zip``: the real 28,790 depth rows of that day
  (``unlicensed_binance_bookdepth/``) in the archive's four columns (the copy's added
  ``weighted_avg_price`` dropped).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import threading
import time
import zipfile
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from tests.fakes.fixtures import KLINES_1M, SHARED, klines_1m, mark_1h, synthetic_oi_5m

PREFIX = "/data/futures/um"
BOOK_DEPTH = SHARED / "unlicensed_binance_bookdepth" / "BTCUSDT-bookDepth-2025-10-10.csv.gz"
KLINE_HEADER = "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore"


def _zip(name: str, text: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, text)
    return buf.getvalue()


def _add(files: dict[str, bytes], path: str, text: str, checksum: bool = True) -> None:
    name = path.rsplit("/", 1)[-1]
    data = _zip(name.replace(".zip", ".csv"), text)
    files[path] = data
    if checksum:
        files[path + ".CHECKSUM"] = f"{hashlib.sha256(data).hexdigest()}  {name}\n".encode()


def _kline_csv(rows: list[list]) -> str:
    return KLINE_HEADER + "\n" + "".join(",".join(str(v) for v in r) + "\n" for r in rows)


def build_archive() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    _add(files, f"{PREFIX}/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2025-10-10.zip", KLINE_HEADER + "\n" + KLINES_1M.read_text().split("\n", 1)[1])
    mk = mark_1h()
    oct_ = [r for r in mk if datetime.fromtimestamp(r[0] / 1000, tz=timezone.utc).month == 10]
    _add(files, f"{PREFIX}/monthly/markPriceKlines/BTCUSDT/1h/BTCUSDT-1h-2025-10.zip", _kline_csv(oct_))
    for day in range(26, 31):
        rows = [r for r in mk if datetime.fromtimestamp(r[0] / 1000, tz=timezone.utc).strftime("%m-%d") == f"09-{day}"]
        _add(files, f"{PREFIX}/daily/markPriceKlines/BTCUSDT/1h/BTCUSDT-1h-2025-09-{day}.zip", _kline_csv(rows), checksum=day != 27)
    lines = ["calc_time,funding_interval_hours,last_funding_rate"]
    with gzip.open(SHARED / "unlicensed_raw_binance" / "binance_usdm_funding_all_2020_2026.csv.gz", "rt") as f:
        for row in csv.DictReader(f):
            if row["symbol"] == "BTCUSDT" and datetime.fromtimestamp(int(row["calc_time"]) / 1000, tz=timezone.utc).strftime("%Y-%m") == "2025-10":
                lines.append(f"{row['calc_time']},{row['funding_interval_hours']},{row['last_funding_rate']}")
    _add(files, f"{PREFIX}/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2025-10.zip", "\n".join(lines) + "\n")
    oi, lsr = synthetic_oi_5m(klines_1m())
    m = ["create_time,symbol,sum_open_interest,sum_open_interest_value,count_toptrader_long_short_ratio,"
         "sum_toptrader_long_short_ratio,count_long_short_ratio,sum_taker_long_short_vol_ratio"]
    for o, l in zip(oi, lsr):
        t = datetime.fromtimestamp(o["timestamp"] / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        m.append(f"{t},BTCUSDT,{o['sumOpenInterest']},{o['sumOpenInterestValue']},1.5,1.4,{l['longShortRatio']},0.9")
    _add(files, f"{PREFIX}/daily/metrics/BTCUSDT/BTCUSDT-metrics-2025-10-10.zip", "\n".join(m) + "\n")
    with gzip.open(BOOK_DEPTH, "rt") as f:
        depth = "".join(",".join(line.rstrip("\n").split(",")[:4]) + "\n" for line in f)
    _add(files, f"{PREFIX}/daily/bookDepth/BTCUSDT/BTCUSDT-bookDepth-2025-10-10.zip", depth)
    return files


class ArchiveServer:
    """Serves ``files`` on 127.0.0.1; ``plan(n, path)`` may return a fault:
    ``429``, ``500``, ``503``, ``cut`` (half the body, Content-Length of all of it), ``corrupt``
    (the bytes altered: the checksum no longer matches)."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.plan: Callable[[int, str], str | None] = lambda n, p: None
        self.log: list[tuple[str, str | None]] = []
        self.delay = 0.0  # seconds before each zip is sent (lets tests kill mid-run)
        self._n = 0
        self._lock = threading.Lock()
        srv = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):  # noqa: N802
                try:
                    srv._handle(self)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._t = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *e):
        self.httpd.shutdown()
        self.httpd.server_close()

    def zips(self) -> list[str]:
        return [p for p, f in self.log if p.endswith(".zip") and f is None]

    def _handle(self, h) -> None:
        path = h.path.split("?")[0]
        with self._lock:
            self._n += 1
            n = self._n
        fault = self.plan(n, path)
        self.log.append((path, fault))
        if fault in ("429", "500", "503"):
            body = b"<Error><Code>SlowDown</Code></Error>"
            h.send_response(int(fault))
            h.send_header("Content-Length", str(len(body)))
            h.send_header("Retry-After", "1")
            h.end_headers()
            h.wfile.write(body)
            return
        data = self.files.get(path)
        if data is None:
            body = b"<Error><Code>NoSuchKey</Code></Error>"
            h.send_response(404)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            return
        if self.delay and path.endswith(".zip"):
            time.sleep(self.delay)
        if fault == "corrupt" and path.endswith(".zip"):
            data = data[:-10] + bytes(10)
        h.send_response(200)
        h.send_header("Content-Type", "application/zip")
        h.send_header("Content-Length", str(len(data)))
        if fault == "cut":
            h.send_header("Connection", "close")
            h.close_connection = True
            h.end_headers()
            h.wfile.write(data[: len(data) // 2])
            return
        h.end_headers()
        h.wfile.write(data)
