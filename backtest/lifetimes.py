"""Child processes that never outlive their parent.

A sweep's worker processes block on a pipe from the parent; if the parent is killed (SIGTERM's
default action, or SIGKILL, which no handler can catch) they would wait forever, holding the
caller's stdout open. On Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` asks the kernel to kill the
worker when its parent exits, however it exits. :func:`die_with_parent` is called first thing in
each worker (the pool's initializer); elsewhere it does nothing.
"""

from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent_pid: int | None = None) -> bool:
    """Have the kernel SIGKILL this process when its parent exits (Linux); True if set up.

    ``parent_pid``: the pid the parent had when it started this process; if the parent already
    died before this call (the process was re-parented), exit now instead of waiting for a
    signal that will never come."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        ok = libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)
    return ok
