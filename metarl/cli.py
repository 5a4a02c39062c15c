"""Command lines from dataclass configs: every field an option, its help from the docstring."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import tomllib
import types
import typing
from typing import Any

__all__ = [
    "ConfigFileError",
    "add_dataclass_arguments",
    "dataclass_from_args",
    "field_docs",
    "load_config_file",
]


class ConfigFileError(ValueError):
    """A config file that cannot be read, or that names an unknown key or a wrong type."""


def field_docs(cls: type) -> dict[str, str]:
    """Field descriptions from the ``Attributes:`` sections of ``cls`` and its bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        text = inspect.getdoc(klass) or ""
        if "Attributes:" not in text:
            continue
        section = text.split("Attributes:", 1)[1]
        current = None
        for line in section.splitlines():
            match = re.match(r"^    (\w+): (.*)$", line)
            if match:
                current = match.group(1)
                docs[current] = match.group(2).strip()
            elif current and line.startswith("        "):
                docs[current] += " " + line.strip()
            elif line.strip() and not line.startswith(" "):
                break
    return docs


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, title: str) -> None:
    """Add one ``--kebab-case`` option per field of dataclass ``cls``."""
    group = parser.add_argument_group(title)
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for field in dataclasses.fields(cls):
        tp, optional = _unwrap_optional(hints[field.name])
        default = field.default
        option = "--" + field.name.replace("_", "-")
        help_text = f"{docs.get(field.name, '')} (default: {default})".replace("%", "%%")
        if tp is bool:
            group.add_argument(
                option, action=argparse.BooleanOptionalAction, default=default, help=help_text
            )
        elif typing.get_origin(tp) is tuple:
            item = typing.get_args(tp)[0]
            group.add_argument(option, type=item, nargs="+", default=default, help=help_text)
        else:
            parse = tp if tp in (int, float, str) else str

            def convert(text: str, parse: Any = parse, optional: bool = optional) -> Any:
                if optional and text.lower() == "none":
                    return None
                return parse(text)

            group.add_argument(
                option, type=convert, default=default, help=help_text, metavar=tp.__name__.upper()
            )


def dataclass_from_args(cls: type, args: argparse.Namespace) -> Any:
    """Build ``cls`` from parsed options (tuples stay tuples)."""
    values = {}
    for field in dataclasses.fields(cls):
        value = getattr(args, field.name)
        values[field.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


def _type_name(tp: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _check_value(key: str, value: Any, hint: Any, path: str) -> Any:
    """``value`` converted to the field type ``hint``, or a :class:`ConfigFileError`."""
    tp, _ = _unwrap_optional(hint)
    if typing.get_origin(tp) is tuple:
        item = typing.get_args(tp)[0]
        if isinstance(value, list) and all(
            isinstance(v, item) and not isinstance(v, bool) for v in value
        ):
            return tuple(value)
        raise ConfigFileError(
            f"{path}: {key} must be a list of {item.__name__} values, e.g. [100, 100]; "
            f"got {value!r}"
        )
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(tp, True)
    if not ok:
        raise ConfigFileError(f"{path}: {key} must be {_type_name(tp)}, got {value!r}")
    return float(value) if tp is float else value


def load_config_file(path: str, classes: typing.Sequence[type]) -> dict[str, Any]:
    """Read a TOML config file whose keys are fields of the dataclasses ``classes``.

    Keys are the option names with ``_`` or ``-`` (``meta_batch_size`` or ``meta-batch-size``);
    values must have the field's type (a TOML integer is accepted where a float is expected).
    The result goes to ``parser.set_defaults`` so that command-line flags override the file.

    Args:
        path: the ``.toml`` file.
        classes: the config dataclasses whose fields are valid keys.

    Returns:
        ``{field name: value}``.

    Raises:
        ConfigFileError: for a missing or malformed file, an unknown key (naming the known ones)
            or a value of the wrong type.
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigFileError(
            f"config file {path} not found; the shipped ones are under configs/"
        ) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigFileError(f"{path} is not valid TOML: {err}") from None
    hints: dict[str, Any] = {}
    for cls in classes:
        hints.update({f.name: typing.get_type_hints(cls)[f.name] for f in dataclasses.fields(cls)})
    values = {}
    for raw_key, value in data.items():
        key = raw_key.replace("-", "_")
        if key not in hints:
            raise ConfigFileError(
                f"{path}: unknown key {raw_key!r}; known keys: {', '.join(sorted(hints))}"
            )
        values[key] = _check_value(raw_key, value, hints[key], path)
    return values
