"""EKS DescribeCluster, authenticated as EKS does it: two fixes of moto 5.2.5's EKS handler, in
the AWS stand-in's process only (crossfed/aws/child.py applies them).

1. Signature: for a request without a body (EKS's GET /clusters/{name}) moto hands its
   signature check the request's headers as the form data, so the signature it recomputes
   never matches a correct one (SignatureDoesNotMatch for every signed DescribeCluster under
   IAM enforcement). The check is given an empty body, as botocore signed it.
2. Error shape: moto answers its authentication and authorization errors in the Query APIs'
   XML, which botocore cannot read for EKS, a REST-JSON service (the code comes out as "403").
   EKS answers them as JSON with x-amzn-ErrorType, as seen in the wild:
   UnrecognizedClientException "The security token included in the request is invalid.",
   AccessDeniedException "User: ARN is not authorized to perform: eks:DescribeCluster on
   resource: arn:aws:eks:REGION:ACCOUNT:cluster/NAME" (gh:aws/aws-cli#5823,
   gh:linz/topo-workflows#279). The resource a policy is judged against is the cluster's ARN.
   CHOICE: a bad signature is InvalidSignatureException (the REST-JSON services' code for it)
   with moto's SignatureDoesNotMatch message; EKS's own text for it is not documented.
"""

from __future__ import annotations

import json
import re
from typing import Any

from moto.core.authorization import ActionAuthenticatorMixin
from werkzeug.exceptions import HTTPException

CLUSTER_PATH = re.compile(r"^/clusters/([^/?]+)")
TRANSLATED = {
    "InvalidClientTokenId": "UnrecognizedClientException",
    "SignatureDoesNotMatch": "InvalidSignatureException",
    "AccessDenied": "AccessDeniedException",
}
_applied = False


class EksAuthError(HTTPException):
    """What moto's call_action renders: description is the body, code the status."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(description=body)
        self.code = status


def _translate(exc: Any, cluster_arn: str | None) -> tuple[str, str]:
    moto_code = getattr(exc, "error_type", None) or type(exc).__name__
    message = str(getattr(exc, "message", "") or "")
    code = TRANSLATED.get(moto_code, moto_code)
    if code == "AccessDeniedException" and cluster_arn:
        message = f"{message} on resource: {cluster_arn}"
    return code, message


def apply() -> None:
    global _applied
    if _applied:
        return
    _applied = True
    from moto.eks.responses import EKSResponse

    original = ActionAuthenticatorMixin._authenticate_and_authorize_normal_action

    def authenticate(self: Any, resource: str = "*") -> None:
        path = getattr(self, "raw_path", "") or ""
        found = CLUSTER_PATH.match(path)
        cluster_arn = None
        if found:
            cluster_arn = (f"arn:aws:eks:{self.region}:{self.current_account}:cluster/"
                           f"{found.group(1)}")
            resource = cluster_arn
        saved = self.data
        if not self.raw_body:
            self.data = {}  # the body botocore signed: none
        try:
            original(self, resource)
        except HTTPException as exc:
            code, message = _translate(exc, cluster_arn)
            self.response_headers["x-amzn-ErrorType"] = code
            self.response_headers["Content-Type"] = "application/json"
            raise EksAuthError(int(exc.code or 403), json.dumps({"message": message})) from exc
        finally:
            self.data = saved

    EKSResponse._authenticate_and_authorize_normal_action = authenticate
