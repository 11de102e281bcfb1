"""STS's error table, one exception per code (AWS's status and code; `check` names what failed).

Messages quoted from the field are AWS's own; where AWS documents none the message is ours
and marked UNDOC here.
"""

from __future__ import annotations


class StsError(Exception):
    code = "InternalFailure"
    status = 500

    def __init__(self, message: str, check: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.check = check  # which verification step failed, for the decision log
        self.detail = detail  # the diagnosis: why, in terms a user can act on


class InvalidIdentityToken(StsError):
    code, status = "InvalidIdentityToken", 400


class ExpiredToken(StsError):
    code, status = "ExpiredTokenException", 400


class AccessDenied(StsError):
    code, status = "AccessDenied", 403


class ValidationError(StsError):
    code, status = "ValidationError", 400


class IDPCommunicationError(StsError):
    code, status = "IDPCommunicationError", 400


class MalformedPolicyDocument(StsError):
    code, status = "MalformedPolicyDocument", 400


class PackedPolicyTooLarge(StsError):
    code, status = "PackedPolicyTooLarge", 400


NO_PROVIDER = "No OpenIDConnect provider found in your account for {issuer}"
WRONG_AUDIENCE = "Incorrect token audience"
MISSING_CLAIM = "Missing a required claim: {claim}"
NO_KEYS = (
    "Couldn't retrieve verification key from your identity provider, please reference "
    "AssumeRoleWithWebIdentity documentation for requirements"
)
THUMBPRINT = "OpenIDConnect provider's HTTPS certificate doesn't match configured thumbprint"
EXPIRED = "Token expired: current date/time {now} must be before the expiration date/time {exp}"
NOT_AUTHORIZED = "Not authorized to perform sts:AssumeRoleWithWebIdentity"
INVALID_ARN = "Request ARN is invalid"  # seen in the field for a non-role RoleArn
INVALID_POLICY_JSON = "This policy contains invalid Json"  # IAM's wording for the same fault
PACKED_TOO_LARGE = "Packed policy consumes {percent}% of allotted space, please use smaller policy."
INTERNAL = "An internal error has occurred"
# UNDOC: AWS publishes no text for these; ours say what is wrong.
BAD_ALGORITHM = "Unsupported token signing algorithm {alg}: use RS256/384/512 or ES256/384/512"
MALFORMED = "The web identity token is not a well-formed JWT: {why}"
NO_MATCHING_KEY = "No key in the identity provider's JWKS matches the token's kid {kid}"
BAD_SIGNATURE = "The web identity token's signature could not be verified"
NOT_YET_VALID = "Token is not yet valid: its nbf {nbf} is after the current date/time {now}"
PROVIDER_ID_WITH_OIDC = (
    "ProviderId is only for OAuth 2.0 access tokens of www.amazon.com or graph.facebook.com; "
    "do not send it with an OpenID Connect ID token"
)
BAD_CLAIM_TYPE = "Token claim {claim} has an invalid type"
BAD_SOURCE_IDENTITY = "The source identity in the token is invalid"
BAD_SESSION_TAGS = "The session tags in the token are invalid: {why}"
DURATION_TOO_LONG = (
    "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
)
