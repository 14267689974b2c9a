"""Parameter plumbing shared by the CLI, configs and sweeps.

Parameter groups are plain frozen dataclasses defined beside the code that uses them
(``population.PopulationParams``, ``sim_params.SimParams``). Users name parameters flat
(``--set long_share=0.7``, sweep grids, config files): :func:`apply_overrides` finds the group
that owns each name, coerces the value to the field's type, and rejects unknown names with the
closest valid one suggested.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import tomllib
from pathlib import Path
from typing import Any, Mapping

from backtest.errors import ParamError, UserError




def field_names(*groups: Any) -> list[str]:
    """All flat parameter names of the given dataclass instances or classes."""
    return [f.name for g in groups for f in dataclasses.fields(g)]


def suggest(name: str, valid: list[str]) -> str:
    """A ' (did you mean X?)' hint, or '' when nothing is close."""
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_hint(name: str, valid: list[str]) -> str:
    """What to tell about an unknown parameter name: the closest one, or else every name there is."""
    return suggest(name, valid) or f"; the parameters are: {', '.join(sorted(valid))}"


#: words that mean "derive it from the data" for a parameter whose default is None
AUTO_WORDS = ("auto", "null", "none")


def _annotation(f: dataclasses.Field) -> str:
    return f.type if isinstance(f.type, str) else repr(f.type)


def coerce(value: Any, like: Any, name: str, kind: str | None = None) -> Any:
    """Convert ``value`` (often a string from the command line) to the type of ``like``.

    ``kind`` is the field's annotation (e.g. ``"float | None"``): a parameter whose default is
    None means "derived from the data" and takes ``auto`` (or ``null``/``none``) for that, or a
    number when its annotation says so. Booleans are refused for numeric parameters (``true`` is
    not 1.0); an integer parameter takes a whole float (``1e6``) but not ``1.5``.
    """
    numeric_kind = kind or ""
    # optional by its declaration, not by its current value (a sweep applies the grid to a base
    # that may already hold a number for it)
    optional = like is None or "None" in numeric_kind or "Optional" in numeric_kind
    is_float = isinstance(like, float) or (optional and "float" in numeric_kind)
    is_int = (isinstance(like, int) and not isinstance(like, bool)) or (optional and not is_float and "int" in numeric_kind)
    text = value.strip() if isinstance(value, str) else None
    if optional and (value is None or (text is not None and text.lower() in AUTO_WORDS)):
        return None
    example = f"a number, or {name}=auto to derive it from the data" if optional else f"e.g. {name}={json.dumps(like) if not isinstance(like, str) else like}"

    def bad(what: str) -> ParamError:
        return ParamError(f"parameter {name!r}: cannot read {value!r} as {what}; give {example}")

    if is_float or is_int:
        what = "a number" if is_float else "a whole number"
        if isinstance(value, bool) or (text is not None and text.lower() in ("true", "false", "yes", "no", "on", "off")):
            raise bad(what)
        if text is not None:
            try:
                v: Any = float(text.rstrip("%")) / 100.0 if is_float and text.endswith("%") else float(text)
            except ValueError:
                raise bad(what) from None
            if is_int:
                try:
                    v = int(text)
                except ValueError:
                    pass
        else:
            v = value
        if not isinstance(v, (int, float)):
            raise bad(what)
        if is_float:
            return float(v)
        if isinstance(v, float):
            if not (math.isfinite(v) and v == int(v)):
                raise bad(what)
            return int(v)
        return v
    if not isinstance(value, str):
        return value
    try:
        if isinstance(like, bool):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if isinstance(like, (dict, list, tuple)) or optional:
            parsed = json.loads(text)
            if isinstance(parsed, dict):
                # JSON object keys are strings: leverage mixes are keyed by numbers.
                parsed = {_num(k): v for k, v in parsed.items()}
            return parsed
    except (ValueError, json.JSONDecodeError):
        raise ParamError(
            f"parameter {name!r}: cannot read {value!r} as {type(like).__name__}; "
            f"give e.g. {name}={json.dumps(like) if not isinstance(like, str) else like}"
        ) from None
    return text


def _num(key: str) -> Any:
    try:
        return float(key) if "." in key else int(key)
    except ValueError:
        return key


def apply_overrides(groups: list[Any], overrides: Mapping[str, Any]) -> list[Any]:
    """Return copies of the dataclass instances ``groups`` with ``overrides`` applied.

    Each override name must be a field of exactly one group. Raises :class:`ParamError` for an
    unknown name (suggesting the closest) or a value of the wrong type. Each group may define
    ``validate(self)`` raising ``ValueError`` for out-of-range values; it is called after.
    """
    valid = field_names(*groups)
    changes: list[dict[str, Any]] = [{} for _ in groups]
    for name, value in overrides.items():
        for i, g in enumerate(groups):
            fields = {f.name: f for f in dataclasses.fields(g)}
            if name in fields:
                changes[i][name] = coerce(value, getattr(g, name), name, _annotation(fields[name]))
                break
        else:
            raise ParamError(f"unknown parameter {name!r}{unknown_hint(name, valid)}")
    out = []
    for g, ch in zip(groups, changes):
        new = dataclasses.replace(g, **ch) if ch else g
        if hasattr(new, "validate"):
            try:
                new.validate()
            except ValueError as e:
                raise ParamError(str(e)) from None
        out.append(new)
    return out


def check_ranges(obj: Any, ranges: Mapping[str, tuple[float, float, bool, str]]) -> None:
    """Range checks of a parameter group, run before any kernel: ``ranges`` maps a field name to
    ``(lo, hi, lo_open, unit)`` - the value must be a finite number in ``[lo, hi]`` (``(lo, hi]``
    when ``lo_open``); None (auto) passes. Raises ``ValueError`` with one line giving the range."""
    for name, (lo, hi, lo_open, unit) in ranges.items():
        v = getattr(obj, name)
        if v is None:
            continue
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)) and (
            (float(v) > lo if lo_open else float(v) >= lo) and float(v) <= hi)
        if not ok:
            rng = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
            raise ValueError(f"parameter {name!r} must be a finite number in {rng}{' ' + unit if unit else ''}, got {v!r}")


def parse_set_options(items: list[str] | None) -> dict[str, str]:
    """Parse repeated ``--set key=value`` options into a dict (ParamError on a bad item)."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise ParamError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value
    return out


def as_dict(*groups: Any) -> dict[str, Any]:
    """Flat dict of every parameter of the given groups (for summary.json and sweeps)."""
    d: dict[str, Any] = {}
    for g in groups:
        d.update(dataclasses.asdict(g))
    return d


def read_toml(path: str | os.PathLike, what: str, error: type[Exception] = UserError, example: str | None = None) -> dict[str, Any]:
    """Parse a TOML file, raising ``error`` with one line naming ``what`` and the file (a folder,
    a missing or unreadable file, a file that is not TOML text)."""
    p = Path(path)
    eg = f", e.g. {example}" if example else ""
    if p.is_dir():
        raise error(f"{what} {p} is a folder; a {what} (TOML) is expected{eg}")
    if not p.is_file():
        raise error(f"{what} {p} does not exist{'; give a ' + what + ' (TOML)' + eg if example else ''}")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise error(f"{what} {p} does not parse: {str(e).splitlines()[0] if str(e) else e}") from None
    except UnicodeDecodeError:
        raise error(f"{what} {p} is not a text file; a {what} (TOML) is expected{eg}") from None
    except OSError as e:
        raise error(f"{what} {p} cannot be read ({e.strerror or e}); check its permissions") from None


#: tables of a --config file that describe it (provenance) and hold no parameter
METADATA_TABLES = ("calibration",)


def load_config(path: str | os.PathLike | None, valid: list[str] | None = None) -> dict[str, Any]:
    """Flat parameters from a TOML file: top-level keys and/or the table ``[params]`` (or
    ``[base]``). A parameter whose value is a table (``leverage_mix = {10 = 0.5, 20 = 0.5}``) is a
    value, not a section. Anything else - an unknown key, a misspelt table (``[param]``), a
    name given twice - is refused with one line naming the file and the closest valid name. A
    ``[calibration]`` table (how a fitted parameter file was obtained: ``backtest calibrate``
    writes it) is provenance, read by people, and skipped here.
    ``valid``: the parameter names (default: those of the population and simulation)."""
    from backtest.errors import ConfigError

    if not path:
        return {}
    raw = read_toml(path, "config file", example="data/calibration/posterior-2025-10-10/params.toml")
    names = valid if valid is not None else _param_names()
    tables = ("params", "base")
    out: dict[str, Any] = {}

    def take(key: str, value: Any, where: str) -> None:
        if key not in names:
            hint = suggest(key, names) or suggest(key, list(tables))
            raise ConfigError(f"config file {path}: unknown parameter {key!r}{where}{hint}; "
                              "give parameters as top-level keys or in a [params] table")
        if key in out:
            raise ConfigError(f"config file {path}: parameter {key!r} is given twice (top level and a table); keep one")
        if isinstance(value, dict):  # TOML table keys are strings: leverage mixes are keyed by numbers
            value = {_num(str(k)): v for k, v in value.items()}
        out[key] = value

    for key, value in raw.items():
        if isinstance(value, dict) and key in METADATA_TABLES:
            continue
        if isinstance(value, dict) and key not in names:
            if key not in tables:
                hint = suggest(key, list(tables)) or suggest(key, names)
                raise ConfigError(f"config file {path}: unknown table [{key}]{hint}; parameters go at the top level or in [params]")
            for k, v in value.items():
                take(str(k), v, f" in [{key}]")
        else:
            take(key, value, "")
    return out


def _param_names() -> list[str]:
    from backtest.population_params import PopulationParams
    from backtest.simulate import SimParams

    return field_names(PopulationParams, SimParams)
