"""Tear-down registered at the moment of creation, run in reverse order, even after failures."""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("crossfed.cleanup")


class Teardown:
    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], object]]] = []

    def add(self, label: str, undo: Callable[[], object]) -> None:
        self._steps.append((label, undo))

    def run(self) -> list[str]:
        """Undo everything; returns the failures (label: error) instead of stopping at the first."""
        failures = []
        while self._steps:
            label, undo = self._steps.pop()
            try:
                undo()
            except Exception as exc:  # keep going: one stuck object must not leak the rest
                log.warning("teardown of %s failed: %s", label, exc)
                failures.append(f"{label}: {exc}")
        return failures

    def __len__(self) -> int:
        return len(self._steps)
