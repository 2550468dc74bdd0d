"""Errors of the command line's own checks."""

from __future__ import annotations


class UserInputError(Exception):
    """A bad file, structure or model name given to a command (one line, exit status 2)."""
