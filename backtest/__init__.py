"""cascade backtester: liquidation cascades on crypto perpetual futures.

Import cheaply: this module imports nothing heavy, so the CLI starts fast.
"""

import hashlib
import os
from pathlib import Path

__version__ = "0.1.0"

#: sources compiled into the numba kernels: numba re-compiles a cached function only when its
#: own file changes, not when a constant or a helper it uses changes in another file, so the
#: cache lives in a folder named after the hash of all of them
_KERNEL_SOURCES = ("records.py", "margin.py", "kernels/cascade.py", "kernels/sorting.py", "kernels/population_kernels.py")


def _numba_cache_dir() -> None:
    if os.environ.get("NUMBA_CACHE_DIR"):
        return  # the user's choice
    here = Path(__file__).resolve().parent
    h = hashlib.sha1(__version__.encode())
    try:
        for name in _KERNEL_SOURCES:
            h.update((here / name).read_bytes())
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cascade-backtest"
        d = base / f"numba-{h.hexdigest()[:16]}"
        d.mkdir(parents=True, exist_ok=True)
        if not os.access(d, os.W_OK):
            return
    except OSError:
        return  # unreadable sources or no writable cache folder: numba's default (__pycache__)
    os.environ["NUMBA_CACHE_DIR"] = str(d)


_numba_cache_dir()
