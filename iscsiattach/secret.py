"""Secrets as a type: a value that never shows itself by accident.

``repr``/``str``/``format`` print a mask, so a Secret that reaches a log line,
an exception message or a traceback's locals leaks nothing. The value comes out
only through ``reveal()``, which makes every such place easy to find.
"""
from __future__ import annotations

import hmac
import secrets as _secrets

MASK = "***"


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str):
            raise TypeError("a Secret wraps a str")
        self._value = value

    @classmethod
    def generate(cls, nbytes: int = 18) -> Secret:
        """A new random secret: ``nbytes`` of entropy, URL-safe characters."""
        return cls(_secrets.token_urlsafe(nbytes))

    def reveal(self) -> str:
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        # Constant time: a comparison must not tell how much of a guess matched.
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, len(self._value)))

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __reduce__(self):  # pragma: no cover - pickling would write it out
        raise TypeError("Secrets are not picklable")
