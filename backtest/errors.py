"""The user-error types, in one module: anything raised as a :class:`UserError` is shown by the CLI
as one line on stderr with exit status 2. Anything else is a bug and keeps its traceback.

Each layer raises its own subclass (store, parameters, events, simulation, sweeps, timeframes);
they are defined here so that every layer, and the CLI boundary, sees the same types.
"""


class UserError(Exception):
    """A mistake in the user's input (bad option, unknown event, missing data...).

    The message is one line that names the problem and the fix; the CLI prints it to stderr
    and exits with status 2, never with a traceback.
    """


class ParamError(UserError, ValueError):
    """A user-supplied parameter is unknown or has a bad value (one-line message)."""


class PopulationError(UserError, ValueError):
    """A population cannot be built from the data and parameters given (no bars or volume in the
    lookback, no tiers, too few survivors...); a ``ValueError`` too, as it was before."""


class TierError(UserError, ValueError):
    """A leverage-tier table that cannot be used (empty, not a number, a gap, a rate outside
    [0, 1)); a ``ValueError`` too, as it was before."""


class SimError(UserError):
    """Bad simulation input: no data for the window, a bad shock, an unknown symbol."""


class SweepError(UserError):
    """A bad sweep file or option (one-line message)."""


class StoreError(UserError):
    """A problem with the store or with data offered to it (one-line message for the user)."""


class EventError(UserError):
    """Unknown event or a malformed catalogue."""


class ScanError(UserError):
    """A bad ``backtest scan`` option, or nothing in the store to scan."""


class FetchError(UserError):
    """A ``backtest fetch`` that cannot start (bad options, an exchange without the needed data)."""


class CsvImportError(StoreError):
    """A CSV file that cannot be imported (message names the file and the fix)."""


class TimeframeError(StoreError):
    """A bar period that is not ``<count><unit>`` with a positive count, up to one week."""


def os_error_message(e: OSError) -> str:
    """One line for an operating-system error (permission, existing file, a file where a folder
    should be, full disk...): what failed, on which path, and what to do about it."""
    import errno

    paths = " -> ".join(str(p) for p in (e.filename, e.filename2) if p is not None)
    text = str(e).strip()
    why = (e.strerror or (text.splitlines()[0] if text else type(e).__name__)).strip()
    fixes = {
        errno.EACCES: "check its permissions or choose another path",
        errno.EPERM: "check its permissions or choose another path",
        errno.EEXIST: "remove it or choose another path",
        errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
        errno.EISDIR: "it is a folder; give a file path",
        errno.ENOENT: "check the path",
        errno.ENOSPC: "free some space or write somewhere else",
        errno.EDQUOT: "free some space or write somewhere else",
        errno.EFBIG: "the file is over this process's file-size limit (ulimit -f) or the file system's; raise the limit or write somewhere else",
        errno.EROFS: "the file system is read-only; write somewhere else",
        errno.ENAMETOOLONG: "give a shorter path",
    }
    if not paths:  # not about a file (e.g. a network error): say what the system said
        return why
    return f"{paths}: {why}; {fixes.get(e.errno or -1, 'check the path and try again')}"


class StoreLockError(StoreError):
    """The store's writer lock could not be taken in time (another writer holds it)."""


class ResourceError(UserError):
    """A run that would need more memory, time or requests than the machine or the limits allow."""


class ConfigError(ParamError):
    """A ``--config`` file with an unknown key or table, or a value in the wrong place."""
class CalibrationError(UserError):
    """A bad calibration, validation or sensitivity request: unknown parameter, no targets for the
    event, a malformed figures file or a bad output folder (one-line message)."""
