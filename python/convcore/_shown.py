"""How an error message shows the value it refuses: an array by its shape and dtype (not its
values: a refused image would fill the screen), anything else by its repr, cut to one line."""

from __future__ import annotations

from typing import Any

_MAX = 80


def shown(value: Any) -> str:
    """``value`` for a message: ``array of shape (2, 3) float32`` for NumPy arrays, else its
    ``repr`` (at most 80 characters, a longer one cut with ``...``)."""
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if isinstance(shape, tuple) and dtype is not None:
        return f"{type(value).__name__} of shape {shape} {dtype}"
    text = repr(value)
    return text if len(text) <= _MAX else text[: _MAX - 3] + "..."
