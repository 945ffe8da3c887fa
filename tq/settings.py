"""Integer, on/off and one-of-a-set settings read from the environment, with one clear error
for a bad value."""
from __future__ import annotations

import os
from typing import Callable


def int_setting(name: str, default: int, ok: Callable[[int], bool], requirement: str) -> int:
    """os.environ[name] as an int, or `default` when unset; a ValueError naming the variable
    and `requirement` (what a valid value is) when it is not an integer or `ok` rejects it."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise ValueError(f"{name} must be {requirement}, got {raw!r}")
    return value


def choice_setting(name: str, default: str | None, choices) -> str | None:
    """os.environ[name], or `default` when unset; a ValueError naming the variable and the
    choices for a value not among them."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    if raw not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def switch_setting(name: str, default: bool, meaning: str) -> bool:
    """os.environ[name] as "0" / "1", or `default` when unset; a ValueError naming the variable
    and `meaning` (what the switch does) for any other value."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    if raw not in ("0", "1"):
        raise ValueError(f"{name} must be 0 or 1 ({meaning}), got {raw!r}")
    return raw == "1"
