"""Errors raised by storage, each carrying the wire code the client is told."""

from __future__ import annotations


class StorageError(Exception):
    """A storage operation was refused; ``code`` is the protocol error code."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.code = code
        self.message = message or code
