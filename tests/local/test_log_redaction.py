"""Every log record is redacted where it is made (crossfed.log_redaction): whatever logger
makes it (crossfed's, moto's, botocore's, werkzeug's, urllib3's, azure-core's, msal's) and
whichever handler writes it, no token, key or secret shows; ordinary text stays readable."""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Callable, Iterator

import boto3
import pytest
from botocore.config import Config
from moto.sts.utils import random_session_token

from crossfed import log_redaction
from crossfed.issuer.issuer import Issuer
from crossfed.issuer.keys import SigningKey
from crossfed.issuer.tokens import ServiceAccountRef

pytestmark = [pytest.mark.local]

LOGGERS = ["crossfed.scenario", "moto.iam.access_control", "botocore.auth", "botocore.endpoint",
           "werkzeug", "cheroot.wsgi", "urllib3.connectionpool",
           "azure.core.pipeline.policies.http_logging_policy", "azure.identity", "msal.application"]
ROLE_ARN = "arn:aws:iam::123456789012:role/crossfed/crossfed-25a280-aws-allowed-43b13ca0"
PLAIN_URL = "https://127.0.0.1:45879/crossfed-25a280-bucket/test-file.txt?list-type=2&max-keys=5"
DIGEST = "9e99a48a9960b14926bb7f3b02e22da2b0ab7280c2d7c5e0f3b1a7d4e6f8a9b0"


def _jwt() -> str:
    return Issuer("https://127.0.0.1:1", SigningKey.generate()).mint(
        ServiceAccountRef("crossfed-probe", "s3-reader"), ["sts.amazonaws.com"], 3600)


@pytest.fixture(scope="module")
def values() -> dict[str, str]:
    """One of each secret shape, made fresh (none of them is in this file's text)."""
    session_token = random_session_token()
    presigned = boto3.client(
        "s3", region_name="us-east-1", endpoint_url="https://127.0.0.1:45879",
        aws_access_key_id="ASIAQEXAMPLE7KEYID42", aws_secret_access_key="x" * 40,
        aws_session_token=session_token, config=Config(signature_version="s3v4"),
    ).generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"})
    return {
        "jwt": _jwt(),
        "session_token": session_token,
        "aws_secret": base64.b64encode(secrets.token_bytes(30)).decode(),
        "pem": SigningKey.generate().private_pem().decode(),
        "entra_secret": "Xk7" + "8Q~" + secrets.token_urlsafe(26)[:34],
        "presigned": presigned,
        "sas": "sv=2022-11-02&ss=b&srt=co&sp=r&se=2030-01-01&sig="
               + base64.b64encode(secrets.token_bytes(32)).decode().replace("+", "%2B"),
        "sigv4": secrets.token_hex(32),
    }


def _signature_parts(url: str) -> list[str]:
    query = url.split("?", 1)[1]
    pairs = dict(pair.split("=", 1) for pair in query.split("&"))
    return [pairs[name] for name in ("X-Amz-Signature", "X-Amz-Credential",
                                     "X-Amz-Security-Token")]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def redacting() -> Iterator[None]:
    """Redaction on for the test; left as it was found (the plugin may have installed it)."""
    was = log_redaction.installed()
    log_redaction.install()
    yield
    if not was:
        log_redaction.uninstall()


@pytest.fixture
def shown(redacting: None) -> Iterator[Callable[..., str]]:
    """shown(logger_name, msg, *args, **kwargs): what a DEBUG handler on that logger wrote."""
    handler = _Collect()
    touched: list[tuple[logging.Logger, int]] = []

    def log(name: str, msg: str, *args: object, **kwargs: object) -> str:
        logger = logging.getLogger(name)
        if handler not in logger.handlers:
            touched.append((logger, logger.level))
            logger.setLevel(logging.DEBUG)
            logger.addHandler(handler)
        handler.lines.clear()
        logger.debug(msg, *args, **kwargs)  # type: ignore[arg-type]
        return "\n".join(handler.lines)

    yield log
    for logger, level in touched:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _assert_hidden(text: str, *secret_values: str) -> None:
    for value in secret_values:
        leaked = value in text or value[:16] in text or value[len(value) // 2:][:16] in text
        assert not leaked, f"the secret ending {value[-4:]} shows, whole or in part"


@pytest.mark.parametrize("name", LOGGERS)
def test_every_loggers_records_are_redacted(shown, values: dict[str, str], name: str) -> None:
    token, session = values["jwt"], values["session_token"]
    lines = [
        f"Authorization: Bearer {token}",
        f"headers={{'X-Amz-Security-Token': '{session}', 'Host': '127.0.0.1'}}",
        f"x-amz-security-token:{session}",
        f"GET /?Action=GetCallerIdentity&X-Amz-Security-Token={session.replace('+', '%2B')}",
        f"AWS_SECRET_ACCESS_KEY={values['aws_secret']}",
        f"credentials {values['aws_secret']} and {session}",
        values["pem"],
        f"client_secret={values['entra_secret']}&grant_type=client_credentials",
        f"secret in passing {values['entra_secret']}.",
        "body: client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3A"
        f"jwt-bearer&client_assertion={token}&client_id=3f2a&scope=api%3A%2F%2Fx%2F.default",
        f"presigned {values['presigned']}",
        f"blob https://acct.blob.core.windows.net/c/b?{values['sas']}",
        f"Signature:\n{values['sigv4']}",  # botocore.auth's DEBUG line
    ]
    text = shown(name, "\n".join(lines))
    _assert_hidden(text, token, session, values["aws_secret"], values["entra_secret"],
                   *_signature_parts(values["presigned"]), values["sas"].rsplit("sig=", 1)[1],
                   values["sigv4"])
    assert [line for line in values["pem"].splitlines()[1:-1] if line in text] == []
    assert "<jwt sha256:" in text and "PRIVATE KEY sha256:" in text
    assert "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth" in text  # a kind, not a secret


def test_args_are_formatted_then_redacted(shown, values: dict[str, str]) -> None:
    text = shown("botocore.endpoint", "Making request for %s with params: %r",
                 "OperationModel(name=AssumeRoleWithWebIdentity)",
                 {"body": {"WebIdentityToken": values["jwt"], "RoleArn": ROLE_ARN}})
    _assert_hidden(text, values["jwt"])
    assert "AssumeRoleWithWebIdentity" in text and ROLE_ARN in text


def test_a_record_is_stored_redacted_with_its_args_folded_in(redacting: None,
                                                             values: dict[str, str]) -> None:
    record = logging.getLogger("msal.token_cache").makeRecord(
        "msal.token_cache", logging.DEBUG, __file__, 1, "event=%s", ({"refresh_token":
                                                                      values["jwt"]},), None)
    assert record.args is None and "refresh_token" in record.msg
    _assert_hidden(record.getMessage(), values["jwt"])


def test_an_exceptions_message_and_traceback_are_redacted(shown, values: dict[str, str]) -> None:
    try:
        raise RuntimeError(f"token refused: {values['jwt']} (session {values['session_token']})")
    except RuntimeError:
        text = shown("azure.identity", "get_token failed", exc_info=True)
    _assert_hidden(text, values["jwt"], values["session_token"])
    assert "Traceback (most recent call last)" in text and "RuntimeError: token refused" in text


def test_stack_info_is_redacted(redacting: None, values: dict[str, str]) -> None:
    record = logging.getLogger("werkzeug").makeRecord(
        "werkzeug", logging.DEBUG, __file__, 1, "request", (), None,
        sinfo=f"Stack (most recent call last):\n  token={values['jwt']}")
    assert record.stack_info is not None and "Stack (most recent call last)" in record.stack_info
    _assert_hidden(record.stack_info, values["jwt"])


def test_a_child_loggers_record_reaches_its_parents_handler_redacted(
        redacting: None, values: dict[str, str]) -> None:
    """A handler on `botocore` gets `botocore.credentials`' records (a filter there would not
    see them: logger filters do not apply to propagated records)."""
    parent, handler = logging.getLogger("botocore"), _Collect()
    level = parent.level
    parent.addHandler(handler)
    parent.setLevel(logging.DEBUG)
    try:
        logging.getLogger("botocore.credentials").debug("session %s", values["session_token"])
    finally:
        parent.removeHandler(handler)
        parent.setLevel(level)
    _assert_hidden("\n".join(handler.lines), values["session_token"])
    assert handler.lines[0].startswith(
        "DEBUG botocore.credentials: session <session token sha256:")


def test_handlers_added_later_see_redacted_records(redacting: None, caplog,
                                                   values: dict[str, str]) -> None:
    """pytest's own handler (caplog; live logs and JUnit's are the same kind) is added after
    install(), and still sees only redacted records."""
    with caplog.at_level(logging.DEBUG, logger="moto.iam.access_control"):
        logging.getLogger("moto.iam.access_control").debug(
            "Creating %s with headers=%s", "IAMRequest",
            {"X-Amz-Security-Token": values["session_token"]})
    _assert_hidden(caplog.text, values["session_token"])
    assert "Creating IAMRequest with headers=" in caplog.text


def test_ordinary_text_stays_readable(shown) -> None:
    lines = [f"assumed {ROLE_ARN}", f"GET {PLAIN_URL} -> 200", f"sha256 {DIGEST}",
             "role crossfed-25a280-aws-allowed-43b13ca0 in account 123456789012",
             "AccessKeyId ASIAQEXAMPLE7KEYID42 expires 2030-01-01T00:00:00Z",
             "Event needs-retry.s3.ListObjectsV2: calling handler <function _handler at 0x7f>",
             "check 'signature' failed: kid forged-kid not in the issuer's keys"]
    text = shown("crossfed.scenario", "\n".join(lines))
    assert text.split(": ", 1)[1] == "\n".join(lines)


def test_remembered_values_are_redacted(shown, redacting: None) -> None:
    value = secrets.token_urlsafe(24)  # a Key Vault secret's shape: no pattern knows it
    log_redaction.remember(value)
    text = shown("azure.core.pipeline.policies.http_logging_policy", "value %s", value)
    assert value not in text and "value <sha256:" in text


def test_install_is_idempotent_and_uninstall_restores(values: dict[str, str]) -> None:
    was = log_redaction.installed()
    before = logging.getLogRecordFactory()
    try:
        log_redaction.install()
        factory = logging.getLogRecordFactory()
        log_redaction.install()
        assert logging.getLogRecordFactory() is factory and log_redaction.installed()
        log_redaction.uninstall()
        assert not log_redaction.installed()
        record = logging.getLogger("x").makeRecord("x", logging.INFO, __file__, 1, "%s",
                                                   (values["jwt"],), None)
        assert record.getMessage() == values["jwt"]  # passed through as made
    finally:
        (log_redaction.install if was else log_redaction.uninstall)()
    assert logging.getLogRecordFactory() is before


def test_values_given_with_extra_are_redacted_when_formatted(redacting: None,
                                                             values: dict[str, str]) -> None:
    """extra= sets attributes after the record factory: the formatter layer scrubs them."""
    handler = _Collect()
    handler.setFormatter(logging.Formatter("%(message)s token=%(token)s"))
    logger = logging.getLogger("crossfed.test.extra")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        logger.info("exchange", extra={"token": values["jwt"]})
    finally:
        logger.removeHandler(handler)
    _assert_hidden("\n".join(handler.lines), values["jwt"])
    assert handler.lines[0].startswith("exchange token=")


def test_a_record_rebuilt_with_make_log_record_is_redacted(redacting: None,
                                                          values: dict[str, str]) -> None:
    """makeLogRecord (a SocketHandler's or QueueHandler's records, unpickled) copies the
    message in after the factory ran."""
    handler = _Collect()
    record = logging.makeLogRecord({"name": "moto.iam.access_control", "levelno": 10,
                                    "levelname": "DEBUG", "msg": "headers=%s",
                                    "args": ({"X-Amz-Security-Token":
                                              values["session_token"]},)})
    handler.handle(record)
    _assert_hidden("\n".join(handler.lines), values["session_token"])
    assert "DEBUG moto.iam.access_control: headers=" in handler.lines[0]


def test_uninstall_puts_the_formatter_back(values: dict[str, str]) -> None:
    was = log_redaction.installed()
    try:
        log_redaction.install()
        assert logging.Formatter.format is not log_redaction._plain_format
        log_redaction.uninstall()
        assert logging.Formatter.format is log_redaction._plain_format
        record = logging.makeLogRecord({"msg": values["jwt"]})
        assert values["jwt"] in logging.Formatter().format(record)  # passed through
    finally:
        (log_redaction.install if was else log_redaction.uninstall)()
