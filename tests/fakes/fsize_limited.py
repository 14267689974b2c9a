"""Run the CLI with a file-size limit on its outputs: ``python -m tests.fakes.fsize_limited BYTES
backtest-args...``. RLIMIT_FSIZE (with SIGXFSZ ignored, so a write past it fails with EFBIG as on
a full disk) is set when the first output is written, after start-up: numba's cache and the
imports are not what is being tested."""

from __future__ import annotations

import resource
import signal
import sys


def main() -> None:
    limit = int(sys.argv[1])
    sys.argv = ["backtest", *sys.argv[2:]]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    import backtest.paths as paths

    group = paths.write_atomic_group

    def limited(items):
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        return group(items)

    paths.write_atomic_group = limited
    from backtest.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
