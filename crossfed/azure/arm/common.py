"""What every part of the ARM stand-in's model shares: resource types and their first
api-versions, ArmError (ARM's {"error": {"code", "message"}}), and the request-body helpers.
No HTTP here (that is server.py); resources.py, rbac.py and clusters.py build on this."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

IDENTITY_TYPE = "Microsoft.ManagedIdentity/userAssignedIdentities"
CREDENTIAL_TYPE = IDENTITY_TYPE + "/federatedIdentityCredentials"
VAULT_TYPE = "Microsoft.KeyVault/vaults"
ACCESS_POLICY_TYPE = VAULT_TYPE + "/accessPolicies"
DELETED_VAULT_TYPE = "Microsoft.KeyVault/deletedVaults"
GROUP_TYPE = "Microsoft.Resources/resourceGroups"
OPERATION_TYPE = "Microsoft.Resources/operationResults"  # ours: operation results of any type
ROLE_ASSIGNMENT_TYPE = "Microsoft.Authorization/roleAssignments"
ROLE_DEFINITION_TYPE = "Microsoft.Authorization/roleDefinitions"
CLUSTER_TYPE = "Microsoft.ContainerService/managedClusters"

# First api-version of each type (SPECS msi, keyvault, authorization and containerservice
# folders); FICs arrived in 2022.
FIRST_API_VERSION = {
    IDENTITY_TYPE: "2015-08-31-preview",
    CREDENTIAL_TYPE: "2022-01-31-preview",
    VAULT_TYPE: "2015-06-01",
    ACCESS_POLICY_TYPE: "2015-06-01",
    DELETED_VAULT_TYPE: "2016-10-01",
    GROUP_TYPE: "2015-01-01",
    OPERATION_TYPE: "2015-01-01",
    ROLE_ASSIGNMENT_TYPE: "2015-07-01",
    ROLE_DEFINITION_TYPE: "2015-07-01",
    CLUSTER_TYPE: "2017-08-31",
}
API_VERSION = re.compile(r"^(\d{4}-\d{2}-\d{2})(-preview)?$")
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                  r"[0-9a-fA-F]{12}$")
# Why a missing resource is missing, as ARM's ResourceNotFound messages end (seen in the field).
NOT_FOUND_FIX = "For more details please go to https://aka.ms/ARMResourceNotFoundFix"


class ArmError(Exception):
    """An ARM error response: status, code and message of {"error": {"code", "message"}}."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def bad_request(message: str, code: str = "BadRequest") -> ArmError:
    return ArmError(400, code, message)


def group_not_found(group: str) -> ArmError:
    return ArmError(404, "ResourceGroupNotFound", f"Resource group '{group}' could not be found.")


def not_found(resource_type: str, name: str, group: str) -> ArmError:
    return ArmError(404, "ResourceNotFound", f"The Resource '{resource_type}/{name}' under "
                    f"resource group '{group}' was not found.")


def check_api_version(resource_type: str, api_version: str | None) -> None:
    if not api_version:
        raise bad_request("The api-version query parameter (?api-version=) is required for all "
                          "requests.", "MissingApiVersionParameter")
    match = API_VERSION.match(api_version)
    first = FIRST_API_VERSION[resource_type]
    if match is None or match.group(1) < first[:10]:
        raise bad_request(f"No registered resource provider found for API version "
                          f"'{api_version}' for type '{resource_type}'. This stand-in serves "
                          f"versions from '{first}' on.", "NoRegisteredProviderFound")


def same_location(a: str, b: str) -> bool:
    """ARM treats 'West Europe' and 'westeurope' as one location."""
    return a.replace(" ", "").lower() == b.replace(" ", "").lower()


def json_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_request(f"The request content was invalid and could not be deserialized: "
                          f"{what} must be a JSON object.", "InvalidRequestContent")
    return value


def string(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def location_of(body: dict[str, Any]) -> str:
    location = string(body.get("location"))
    if location is None:  # ARM code for tracked resources without location (assumed)
        raise bad_request("The location property is required for this definition.",
                          "LocationRequired")
    return location


def tags_of(body: dict[str, Any]) -> dict[str, str]:
    tags = body.get("tags") or {}
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise bad_request("The request content was invalid and could not be deserialized: "
                          "tags must map names to strings.", "InvalidRequestContent")
    return dict(tags)


def location_name(location: str) -> str:
    """ARM's name of a location in paths: 'West Europe' -> 'westeurope'."""
    return location.replace(" ", "").lower()


def timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
