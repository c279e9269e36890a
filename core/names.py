"""Names that become paths, run names and label values: model names, kept to a safe alphabet."""

from __future__ import annotations

import re

from core.errors import InputError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def is_valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


def check_name(kind: str, name: str) -> str:
    """`name` itself, or an InputError saying which characters are allowed."""
    if not is_valid_name(name):
        raise InputError(
            f"{kind} name {name!r} is not allowed: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name
