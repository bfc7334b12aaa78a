"""Why a token was refused, before it becomes the ``unauthorized`` wire error (auth.tokens)."""

from __future__ import annotations


class Refused(ValueError):
    """The token is not valid (signature, form or claims)."""


class Expired(Refused):
    """The token is valid but its ``exp`` has passed."""
