"""The user-error type: anything raised as a :class:`UserError` is shown as one line, exit 2."""


class UserError(Exception):
    """A mistake in the user's input (bad option, unknown event, missing data...).

    The message is one line that names the problem and the fix; the CLI prints it to stderr
    and exits with status 2, never with a traceback.
    """
