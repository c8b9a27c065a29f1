"""Errors raised by corpus readers: always name the file, the place in it, and the problem."""
from __future__ import annotations

from pathlib import Path


class CorpusError(ValueError):
    """Bad corpus input. ``str(err)`` reads ``<path>[:<where>]: <problem>``."""

    def __init__(self, path: str | Path, problem: str, where: str | int | None = None):
        self.path = str(path)
        self.where = where
        self.problem = problem
        loc = self.path if where is None else f"{self.path}:{where}"
        super().__init__(f"{loc}: {problem}")
