"""The verifying STS's HTTP layer: takes AssumeRoleWithWebIdentity off the wire before moto.

Everything else passes through to moto untouched (the consumed form body is put back). The
decision feed answers at its log's secret path only (crossfed/decisions.py).
"""

from __future__ import annotations

import io
import json
import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from werkzeug.wrappers import Response

from crossfed.aws import errors
from crossfed.aws.web_identity import (
    Grant,
    WebIdentityRequest,
    WebIdentityVerifier,
    parse_request,
)
from crossfed.decisions import Decision, DecisionLog, is_feed_path, token_summary
from crossfed.redact import fingerprint, scrub

NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
ACTION = "AssumeRoleWithWebIdentity"

Minter = Callable[[Grant, WebIdentityRequest], Any]  # -> moto AssumedRole
# access key id -> (role ARN, what the role's policies allow) for web-identity sessions
DenialExplainer = Callable[[str], "tuple[str, str] | None"]
ACCESS_KEY = re.compile(r"Credential=([A-Z0-9]+)/")
POLICY_ARN_FIELD = re.compile(r"PolicyArns\.member\.(\d+)\.arn")
JWT_LIKE = re.compile(r"eyJ[\w-]{4,}(?:\.[\w-]*){0,2}")


def _xml(tag: str, value: object) -> str:
    return f"<{tag}>{escape(str(value))}</{tag}>"


def success_body(grant: Grant, assumed: Any, request_id: str) -> str:
    credentials = "".join([
        _xml("AccessKeyId", assumed.access_key_id),
        _xml("SecretAccessKey", assumed.secret_access_key),
        _xml("SessionToken", assumed.session_token),
        _xml("Expiration", assumed.expiration.strftime("%Y-%m-%dT%H:%M:%SZ")),
    ])
    user = _xml("Arn", assumed.arn) + _xml("AssumedRoleId", assumed.user_id)
    result = "".join([
        _xml("SubjectFromWebIdentityToken", grant.claims["sub"]),
        _xml("Audience", grant.audience),
        f"<AssumedRoleUser>{user}</AssumedRoleUser>",
        f"<Credentials>{credentials}</Credentials>",
        _xml("Provider", grant.claims["iss"]),  # documented: the iss value for OIDC tokens
    ])
    # Only when the token or request supplied them, as AWS's answers show.
    if grant.packed_policy_size is not None:
        result += _xml("PackedPolicySize", grant.packed_policy_size)
    if grant.source_identity is not None:
        result += _xml("SourceIdentity", grant.source_identity)
    return (
        f'<AssumeRoleWithWebIdentityResponse xmlns="{NAMESPACE}">'
        f"<AssumeRoleWithWebIdentityResult>{result}</AssumeRoleWithWebIdentityResult>"
        f"<ResponseMetadata>{_xml('RequestId', request_id)}</ResponseMetadata>"
        "</AssumeRoleWithWebIdentityResponse>"
    )


def error_body(error: errors.StsError, request_id: str) -> str:
    kind = "Receiver" if error.status >= 500 else "Sender"
    return (
        f'<ErrorResponse xmlns="{NAMESPACE}"><Error>{_xml("Type", kind)}'
        f"{_xml('Code', error.code)}{_xml('Message', error.message)}</Error>"
        f"{_xml('RequestId', request_id)}</ErrorResponse>"
    )


def _form(environ: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    """Query string plus urlencoded body; returns the raw body so it can be put back."""
    body = b""
    if environ.get("REQUEST_METHOD") == "POST" and environ.get("CONTENT_TYPE", "").startswith(
        "application/x-www-form-urlencoded"
    ):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
    # keep_blank_values: an empty parameter is present (too short), not missing (null)
    fields = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    fields.update(parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True))
    return {k: v[0] for k, v in fields.items()}, body


def policy_arns(fields: dict[str, str]) -> list[str]:
    """The Query protocol's list: PolicyArns.member.N.arn, in N order."""
    found = [(int(m.group(1)), value) for key, value in fields.items()
             if (m := POLICY_ARN_FIELD.fullmatch(key))]
    return [value for _, value in sorted(found)]


def internal_detail(exc: Exception, fields: dict[str, str]) -> str:
    """An unexpected exception, for the decision feed: its type and message with the request's
    token (whole, or any of its parts) and anything JWT-like replaced by fingerprints."""
    token = fields.get("WebIdentityToken", "")
    text = scrub(repr(exc), token, *token.split("."))
    return JWT_LIKE.sub(lambda m: f"<{fingerprint(m.group(0))}>", text)


class VerifyingSTS:
    """WSGI middleware in front of moto's app."""

    def __init__(self, downstream: Any, verifier: WebIdentityVerifier, mint: Minter,
                 log: DecisionLog, explain_denial: DenialExplainer | None = None) -> None:
        self.downstream, self.verifier, self.mint, self.log = downstream, verifier, mint, log
        self.explain_denial = explain_denial

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] == "GET" and is_feed_path(environ.get("PATH_INFO", ""),
                                                              self.log.feed_path):
            body = json.dumps(self.log.as_json())
            return Response(body, content_type="application/json")(environ, start_response)
        if "HTTP_AUTHORIZATION" in environ:
            return self.pass_signed(environ, start_response)  # signed calls never are this action
        if environ.get("PATH_INFO", "/") != "/":
            return self.downstream(environ, start_response)
        fields, raw = _form(environ)
        if fields.get("Action") != ACTION:
            environ["wsgi.input"] = io.BytesIO(raw)
            environ["CONTENT_LENGTH"] = str(len(raw))
            return self.downstream(environ, start_response)
        status, body = self.assume(fields)
        response = Response(body, status=status, content_type="text/xml")
        return response(environ, start_response)

    def pass_signed(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        """Hand a signed call to moto; note access denials of web-identity sessions."""

        def watch(status: str, headers: Any, exc_info: Any = None) -> Any:
            if status.startswith("403") and self.explain_denial is not None:
                key = ACCESS_KEY.search(environ.get("HTTP_AUTHORIZATION", ""))
                found = self.explain_denial(key.group(1)) if key else None
                if found is not None:
                    role_arn, detail = found
                    operation = f"{environ['REQUEST_METHOD']} {environ.get('PATH_INFO', '/')}"
                    self.log.record(Decision(
                        request_id=str(uuid.uuid4()), action=operation, target=role_arn,
                        token={}, allowed=False, code="AccessDenied",
                        message="denied by the role's permission policies", check="permissions",
                        detail=detail))
            return start_response(status, headers, exc_info)

        return self.downstream(environ, watch)

    def assume(self, fields: dict[str, str]) -> tuple[int, str]:
        request_id = str(uuid.uuid4())
        decision = Decision(request_id=request_id, action=ACTION,
                            target=fields.get("RoleArn", ""),
                            session_name=fields.get("RoleSessionName", ""),
                            token=token_summary(fields.get("WebIdentityToken", "")),
                            allowed=False)
        try:
            request = parse_request(fields, policy_arns(fields))
            grant = self.verifier.verify(request)
            assumed = self.mint(grant, request)
        except errors.StsError as error:
            return self._refuse(decision, error, request_id)
        except Exception as exc:  # a bug of ours still answers in STS's envelope, as Receiver
            error = errors.StsError(errors.INTERNAL, check="internal",
                                    detail=internal_detail(exc, fields))
            return self._refuse(decision, error, request_id)
        decision.allowed, decision.detail = True, f"assumed {assumed.arn}"
        self.log.record(decision)
        return 200, success_body(grant, assumed, request_id)

    def _refuse(self, decision: Decision, error: errors.StsError,
                request_id: str) -> tuple[int, str]:
        decision.code, decision.message = error.code, error.message
        decision.check, decision.detail = error.check, error.detail
        self.log.record(decision)
        return error.status, error_body(error, request_id)
