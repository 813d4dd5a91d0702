"""Errors that carry where they happened, so every failure becomes one readable line.

The CLI and the API turn a `LetheError` into an exit code or a JSON error; nothing
below them prints or exits. Messages never contain row values: they name datasets,
tables, columns and policy paths only.
"""

from __future__ import annotations


class LetheError(Exception):
    """Base error: a message, an optional location and the exit code it maps to."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class PolicyError(LetheError):
    """The policy file is malformed or inconsistent."""


class SchemaMismatch(LetheError):
    """The policy names a table or column that the live store does not have."""


class StoreError(LetheError):
    """A store refused an operation; the message names the store and dataset, never values."""


class NotFound(LetheError):
    """A hold, run or other record asked for by id does not exist."""


class UsageError(LetheError):
    """A command-line argument is malformed."""
