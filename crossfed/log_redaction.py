"""Redaction where log records are made: every record of every logger, crossfed's and the
stand-ins' third-party ones (moto, werkzeug, cheroot, urllib3, botocore, azure-core, msal, ...),
leaves its factory with no secret crossfed can recognise (crossfed.redact.scrub_text: JWTs,
PEM private keys, bearer values, AWS secret keys, session tokens and signatures, Entra client
secrets, client assertions, SAS signatures, and the values given to `remember`).

    from crossfed.log_redaction import install
    install()   # once, before logging starts; idempotent

Why the record factory (logging.setLogRecordFactory) and not a filter on a handler or logger:
a logger's filters do not see records propagated from its child loggers (a filter on the root
logger misses `botocore.auth`'s), and the handlers that write what a run leaves behind are not
ours: pytest adds its caplog, live-log (--log-cli-level) and report handlers (JUnit's
junit_logging) after the plugins are configured, and an SDK or a user may add more. A record is
made once, by the factory, whoever logs it and whoever writes it, so redacting there covers
every handler, present and future. The factory runs only for records that pass their logger's
level check (Logger.debug returns before making one when DEBUG is off), so at the default INFO
level botocore's and urllib3's DEBUG chatter costs nothing more than before.

What the factory does to a record: the formatted message (msg % args) is scrubbed and stored
as msg with args=None (handlers format it again to the same text); an exception's traceback is
formatted and scrubbed into exc_text, and exc_info cleared, so no handler formats the
exception's message or frames itself (logging.Formatter prints exc_text); stack_info is
scrubbed.

Two ways round the factory remain, and a second layer closes them: values given with `extra=`
are set on the record after the factory made it, and logging.makeLogRecord(d) calls the factory
with an empty message and then copies `d` in (how records come back from a SocketHandler or a
QueueHandler's pickle). So install() also wraps logging.Formatter.format, which every
handler's formatter is or calls (pytest's live-log, caplog and report formatters subclass it):
the finished text is scrubbed once more before any handler writes it. A formatter that does not
derive from logging.Formatter (a structured-logging framework's) is not covered by that layer.

Hand-written because no well-kept library redacts at record creation: the maintained ones are
handler filters or formatters (the gap above), or belong to a structured-logging framework.

The factory is per process: install() belongs in crossfed's pytest plugin (pytest_configure),
in `crossfed serve`, and in the AWS stand-in's own process (crossfed/aws/child.py, where moto
logs), each before its loggers run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from crossfed.redact import scrub_text

_lock = threading.Lock()
_previous: Callable[..., logging.LogRecord] | None = None
_active = False  # records are redacted
_chained = False  # _factory is in logging's factory chain
_known: set[str] = set()
_formatter = logging.Formatter()
_plain_format = logging.Formatter.format  # the stdlib's, before install() wraps it


def remember(*secrets: str | None) -> None:
    """Secret values no pattern recognises (a Key Vault secret's value, a password): replaced by
    their fingerprints in every record made from now on. Values under 8 characters are
    ignored (crossfed.redact.scrub)."""
    with _lock:
        _known.update(s for s in secrets if s and len(s) >= 8)


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Scrub one record in place (what the installed factory does to each)."""
    known = tuple(_known)
    try:
        message = record.getMessage()
    except Exception:  # msg % args fails: keep both, as text, for the handler to show
        message = f"{record.msg!r} % {record.args!r}"
    record.msg, record.args = scrub_text(message, *known), None
    if record.exc_info and record.exc_info[0] is not None:
        record.exc_text = scrub_text(_formatter.formatException(record.exc_info), *known)
        record.exc_info = None
    elif record.exc_text:
        record.exc_text = scrub_text(record.exc_text, *known)
    if record.stack_info:
        record.stack_info = scrub_text(record.stack_info, *known)
    return record


def _factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    assert _previous is not None
    record = _previous(*args, **kwargs)
    return redact_record(record) if _active else record


def _format(self: logging.Formatter, record: logging.LogRecord) -> str:
    text = _plain_format(self, record)
    return scrub_text(text, *tuple(_known)) if _active else text


def install() -> None:
    """Redact every log record this process makes from now on. Idempotent."""
    global _previous, _active, _chained
    with _lock:
        if not _chained:  # else ours is still in the chain (perhaps under a later factory)
            _previous = logging.getLogRecordFactory()
            logging.setLogRecordFactory(_factory)
            _chained = True
        logging.Formatter.format = _format  # type: ignore[method-assign]
        _active = True


def uninstall() -> None:
    """Stop redacting (for tests). The previous factory is put back, unless another was set
    over ours since: that one keeps calling ours, which then passes records through as made."""
    global _active, _chained
    with _lock:
        _active = False
        if logging.Formatter.format is _format:
            logging.Formatter.format = _plain_format  # type: ignore[method-assign]
        if _chained and logging.getLogRecordFactory() is _factory:
            assert _previous is not None
            logging.setLogRecordFactory(_previous)
            _chained = False


def installed() -> bool:
    """Whether records made now are redacted."""
    return _active and _chained
