"""Show secrets the way crossfed is allowed to show them: digest and last characters only."""

from __future__ import annotations

import hashlib
import re


def fingerprint(secret: str | bytes, tail: int = 6) -> str:
    """A stable, non-reversible label for a token, key or secret value."""
    raw = secret.encode() if isinstance(secret, str) else secret
    digest = hashlib.sha256(raw).hexdigest()[:12]
    text = raw.decode(errors="replace")
    return f"sha256:{digest}…{text[-tail:]}" if len(text) > tail * 3 else f"sha256:{digest}"


def scrub(text: str, *secrets: str | None) -> str:
    """Replace every occurrence of the given secrets in text with their fingerprints."""
    for secret in secrets:
        if secret and len(secret) >= 8:
            text = text.replace(secret, f"<{fingerprint(secret)}>")
    return text


# --- scrubbing text crossfed did not write (pod logs, termination messages, stderr) --------
#
# Applied in order; each match becomes `<kind sha256:…>` with at most the last characters of a
# part that carries no claims (a JWT's signature, a key's random tail), never its payload.

_PEM_PRIVATE = re.compile(
    r"-----BEGIN (?P<label>[A-Z0-9 ]*)PRIVATE KEY-----[\s\S]*?"
    r"(?:-----END (?P=label)PRIVATE KEY-----|\Z)")  # a log cut inside the key: to its end
_JWT = re.compile(r"eyJ[\w-]{2,}\.eyJ[\w-]*\.(?P<signature>[\w-]*)")  # alg none: empty signature
_AUTH_HEADER = re.compile(r"(?i)\b(?P<scheme>bearer|basic)(?P<gap>\s+)(?P<value>[\w.~+/=-]{8,})")
_NAMED = re.compile(  # KEY=value, "key": "value", key: value, key=value& (form bodies)
    r"(?i)(?<![\w-])(?P<name>[\w-]*(?:secret|password|passwd|session[_-]?token|security[_-]?token|"
    r"access[_-]?token|refresh[_-]?token|id[_-]?token|client[_-]?assertion|private[_-]?key)"
    r"[\w-]*)(?<![_-]type)"  # client_assertion_type=urn:...: a name for a kind, no secret
    r"(?P<sep>[\"']?\s*[:=]\s*[\"']?)(?P<value>[^\s\"',;&<>]{8,})")
# Text without any of these words has no _NAMED pair: a quick test first, since every log
# record at DEBUG level goes through scrub_text (crossfed/log_redaction.py).
_NAMED_WORDS = ("secret", "passw", "token", "assertion", "private")
# What signs a request or a URL: a presigned URL's X-Amz-Signature and X-Amz-Credential, the
# Signature= of a SigV4 Authorization header, an Azure SAS's sig=.
_SIGNED = re.compile(
    r"(?i)(?<![\w-])(?P<name>x-amz-signature|x-amz-credential|signature|sig)"
    r"(?P<sep>=)(?P<value>[^\s\"',;&<>]{8,})")
# botocore.auth's DEBUG line "Signature:\n<64 hex>": the SigV4 signature it just computed.
_SIGV4_SHOWN = re.compile(
    r"(?i)(?<![\w-])(?P<name>signature)(?P<sep>:\s*)(?P<value>[0-9a-f]{64})\b")
# An AWS session token by its prefix (moto's FQoGZXIvYXdzE..., AWS's FwoG... and IQoJb3JpZ2lu...),
# also percent-encoded in a URL's query.
_SESSION_TOKEN = re.compile(
    r"(?:FQoGZXIvYXdzE|FwoGZXIvYXdzE|IQoJb3JpZ2lu)(?:[A-Za-z0-9+/=]|%2[BbFf]|%3[Dd]){40,}")
# An Entra client secret: three characters, a digit, "Q~", then 31-34 more (a sentence's
# full stop after it is not one of them).
_AZURE_SECRET = re.compile(
    r"(?<![\w.~-])[\w.-]{3}\dQ~[\w.~-]{31,34}(?![\w~-]|\.[\w.~-])")
# A bare high-entropy run of 40 or more base64/base64url characters: AWS secret access keys
# (40), session tokens (hundreds), the stand-ins' client secrets. Hex digests (one case only)
# and names (no mixed case with digits, or both / and -) are left alone.
_OPAQUE = re.compile(r"(?<![\w/+=~-])[A-Za-z0-9/+_-]{40,}={0,2}(?![\w/+=~-])")


def _tail_free(kind: str, value: str, tail: str = "") -> str:
    digest = hashlib.sha256(value.encode()).hexdigest()[:12]
    return f"<{kind} sha256:{digest}…{tail}>" if tail else f"<{kind} sha256:{digest}>"


def _opaque(match: re.Match[str]) -> str:
    value = match.group(0)
    if not (any(c.isupper() for c in value) and any(c.islower() for c in value)
            and any(not c.isalpha() for c in value)):
        return value  # a hex digest, a word, a lower-case name
    if any(c in "/+" for c in value) and any(c in "-_" for c in value):
        return value  # neither base64 nor base64url: a path or an ARN's resource part
    return _tail_free("secret", value, value[-4:])


def _jwt(match: re.Match[str]) -> str:
    signature = match.group("signature")
    return _tail_free("jwt", match.group(0), signature[-6:] if len(signature) >= 24 else "")


def _named(match: re.Match[str]) -> str:
    value = match.group("value")
    if value.startswith("<"):  # already shown as a fingerprint
        return match.group(0)
    return f"{match.group('name')}{match.group('sep')}{_tail_free('secret', value, value[-4:])}"


def scrub_text(text: str, *secrets: str | None) -> str:
    """Text from outside crossfed's own formatting (a pod's logs and termination message, a
    process's stderr, an SDK's error message) with every secret crossfed can recognise
    replaced: the known `secrets` first, then PEM private keys, JWTs, Authorization header
    values, `name=value` pairs whose name says secret/token/password/key, request and URL
    signatures (X-Amz-Signature, X-Amz-Credential, SigV4 Signature, SAS sig=), AWS session
    tokens (also percent-encoded), Entra client secrets and bare high-entropy strings of 40+
    characters (AWS secret keys, session tokens)."""
    text = scrub(text, *secrets)
    # Each pattern only where a quick look at the text as given finds its marker (a word,
    # a prefix): most lines have none, and what a replacement puts in needs no more replacing.
    lower = text.lower()
    if "private key-----" in lower:
        text = _PEM_PRIVATE.sub(
            lambda m: _tail_free(f"{m.group('label')}PRIVATE KEY", m.group(0)), text)
    if "eyj" in lower:
        text = _JWT.sub(_jwt, text)
    if "bearer" in lower or "basic" in lower:
        text = _AUTH_HEADER.sub(lambda m: m.group("scheme") + m.group("gap") + (
            m.group("value") if m.group("value").startswith("<")
            else _tail_free("credential", m.group("value"))), text)
    if "gzxivyxdz" in lower or "iqojb3jpz2lu" in lower:
        text = _SESSION_TOKEN.sub(lambda m: _tail_free("session token", m.group(0)), text)
    if any(word in lower for word in _NAMED_WORDS):
        text = _NAMED.sub(_named, text)
    if "sig" in lower or "credential=" in lower:
        text = _SIGNED.sub(_named, text)
        text = _SIGV4_SHOWN.sub(_named, text)
    if "q~" in lower:
        text = _AZURE_SECRET.sub(lambda m: _tail_free("secret", m.group(0), m.group(0)[-4:]),
                                 text)
    return _OPAQUE.sub(_opaque, text)
