"""Errors raised by auth, each carrying the wire code the client is told."""

from __future__ import annotations


class AuthError(Exception):
    """Identity or access was refused; ``code`` is ``unauthorized`` or ``forbidden``."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.code = code
        self.message = message or code
