"""Checks of the raw command line that typer cannot make once it has converted the values: an
empty value (``--out ''``) becomes ``Path('.')``, the current folder, indistinguishable from an
explicit ``--out .``. No option or argument of this CLI means anything when empty."""

from __future__ import annotations


def empty_value_error(argv: list[str]) -> str | None:
    """One line naming the first empty option value or argument in ``argv``, or None."""
    for i, arg in enumerate(argv):
        if arg.startswith("--") and arg.endswith("=") and len(arg) > 3:
            return f"{arg[:-1]} is empty; give it a value or leave the option out"
        if arg.strip():
            continue
        prev = argv[i - 1] if i else ""
        if prev.startswith("-") and "=" not in prev and len(prev) > 1:
            return f"{prev} is empty; give it a value or leave the option out"
        return f"argument {i + 1} of the command line is empty; give a value"
    return None
