"""One line when a long step starts and one when it ends, with the elapsed seconds.

Written through pytest's terminal reporter with capturing suspended for the line, so they
show with and without -s, between the progress dots. A pytest-xdist worker has no terminal
of its own: its lines go only to the "crossfed.progress" logger (kept with the test's report
and shown when it fails). Outside pytest (the CLI) they go to standard error.
"""

from __future__ import annotations

import logging
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
    log.info("%s", line)
    config = _config
    if config is None:
        print(line, file=sys.stderr, flush=True)
        return
    if getattr(config, "workerinput", None) is not None:
        return  # an xdist worker: the log record above is all it has
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        print(line, file=sys.stderr, flush=True)
        return
    capture = config.pluginmanager.get_plugin("capturemanager")
    if capture is None:
        reporter.ensure_newline()
        reporter.write_line(line)
        return
    with capture.global_and_fixture_disabled():  # else captured with the test's output
        reporter.ensure_newline()
        reporter.write_line(line)


@contextmanager
def progress(what: str) -> Iterator[None]:
    """`crossfed: WHAT ...` now, `crossfed: WHAT: done in N.N s` (or `failed after N.N s:
    <error type>`) at the end."""
    emit(f"crossfed: {what} ...")
    started = time.monotonic()
    try:
        yield
    except BaseException as exc:
        emit(f"crossfed: {what}: failed after {time.monotonic() - started:.1f} s "
             f"({type(exc).__name__})")
        raise
    emit(f"crossfed: {what}: done in {time.monotonic() - started:.1f} s")
