"""One line when a long step starts and one when it ends, with the elapsed seconds.

Written through pytest's terminal reporter with capturing suspended for the line, so they
show with and without -s, between the progress dots. A pytest-xdist worker has no terminal
reporter of its own: it writes each line, prefixed with its id, to the standard error it
shares with the controller, in one write on a line of its own. Every line also goes to the
"crossfed.progress" logger. Outside pytest (the CLI) they go to standard error.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("crossfed.progress")
_config: Any = None  # the session's pytest.Config, set by the plugin


def use_pytest(config: Any) -> None:
    global _config
    _config = config


def emit(line: str) -> None:
    """One progress line, wherever this process shows them."""
    config = _config
    if config is None:  # the CLI: standard error is where its progress goes
        print(line, file=sys.stderr, flush=True)
        return
    log.info("%s", line)
    capture = config.pluginmanager.get_plugin("capturemanager")
    worker = getattr(config, "workerinput", None)
    if worker is not None:
        # An xdist worker has no terminal reporter of its own, but shares the controller's
        # standard error: the line goes there (capturing suspended) in one write, on a line
        # of its own.
        text = f"\n[{worker.get('workerid', 'worker')}] {line}\n".encode()
        if capture is None:
            os.write(2, text)
            return
        with capture.global_and_fixture_disabled():
            os.write(2, text)
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        print(line, file=sys.stderr, flush=True)
        return
    if capture is None:
        reporter.ensure_newline()
        reporter.write_line(line)
        return
    with capture.global_and_fixture_disabled():  # else captured with the test's output
        reporter.ensure_newline()
        reporter.write_line(line)


class Step:
    """A long step's lines: `started()` prints the start line (once), the end line follows
    only if it was printed. Waits that usually end at once start their line on the first
    retry, so that instant ones (the local stand-ins') print nothing."""

    def __init__(self, what: str) -> None:
        self.what, self.begun = what, None

    def started(self) -> None:
        if self.begun is None:
            self.begun = time.monotonic()
            emit(f"crossfed: {self.what} ...")

    def ended(self, error: BaseException | None = None) -> None:
        if self.begun is None:
            return
        elapsed = time.monotonic() - self.begun
        emit(f"crossfed: {self.what}: failed after {elapsed:.1f} s ({type(error).__name__})"
             if error is not None else f"crossfed: {self.what}: done in {elapsed:.1f} s")


@contextmanager
def progress(what: str, *, eager: bool = True) -> Iterator[Step]:
    """`crossfed: WHAT ...` now (eager) or at the step's `started()`, and `crossfed: WHAT:
    done in N.N s` (or `failed after N.N s (<error type>)`) at the end."""
    step = Step(what)
    if eager:
        step.started()
    try:
        yield step
    except BaseException as exc:
        step.ended(exc)
        raise
    step.ended()
