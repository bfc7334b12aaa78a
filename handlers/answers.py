"""The base of the success bodies /openapi.json types (handlers.openapi_registry ``response=``).

A field without a default is sent in every answer (``null`` only where its type says so); a
field with a default is sometimes absent, and never sent as that default: an answer built
through :meth:`Answer.wire` leaves out what was not given, and the document lists such a
field without ``required`` and without a default no client would ever see.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def no_defaults(schema: dict[str, Any]) -> None:
    """An answer's default means "absent": no property publishes one."""
    for field in schema.get("properties", {}).values():
        field.pop("default", None)


def orphaned_field(what: str = "session") -> Any:
    """``orphaned`` of a page's load (``SessionDirectory.access``): absent only when ``what`` was
    deleted while the answer was made."""
    return Field(
        default=False,
        description=f"it was an orphan before this load, which revived it (absent only when the {what} was"
        " deleted while the answer was made)",
    )


def orphan_days_field() -> Any:
    """``orphan_days`` beside :func:`orphaned_field`."""
    return Field(default=0, description="the days without access that make an orphan (as orphaned)")


class Answer(BaseModel):
    """A success body: its fields in the order they are sent."""

    model_config = ConfigDict(json_schema_extra=no_defaults)

    def wire(self) -> dict[str, Any]:
        """The body as sent: every field given, in declaration order; the absent ones left out."""
        return self.model_dump(exclude_unset=True)
