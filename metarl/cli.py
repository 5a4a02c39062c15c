"""Command lines from dataclass configs: every field an option, its help from the docstring."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import types
import typing
from typing import Any

__all__ = ["add_dataclass_arguments", "dataclass_from_args", "field_docs"]


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
