"""Sources: pollers that ask streaming servers who is listening and report observations."""

from __future__ import annotations


class SourceError(Exception):
    """A server could not be polled; the message names the source and what to check."""
