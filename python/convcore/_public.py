"""``dir()`` of a module: its public names (``__all__``) and the standard dunders, not its imports."""

from __future__ import annotations

from typing import Any, Callable, Dict, List


def public_dir(namespace: Dict[str, Any]) -> Callable[[], List[str]]:
    """A module-level ``__dir__`` (PEP 562) listing ``namespace["__all__"]`` as it is when called.

    Use as ``__dir__ = public_dir(globals())`` after ``__all__``: a name added to ``__all__``
    later shows up too, and helper imports (``np``, ``os``, ``Optional``...) do not.
    """

    def __dir__() -> List[str]:
        dunders = {k for k in namespace if k.startswith("__") and k.endswith("__")}
        return sorted(set(namespace["__all__"]) | dunders)

    return __dir__
