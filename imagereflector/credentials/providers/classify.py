"""Which cloud a registry host belongs to, and whether to log in to it (contract §2.5.2).

The registry host decides the cloud, not ``spec.provider``: ``spec.provider`` (or, for
``generic``, the deprecated ``--*-autologin-*`` flags) only says which cloud logins are
switched on. A host of a cloud that is not switched on is logged in to anonymously, as
v0.31 does when it swallows ``registry provider not configured``.

Invariants:

* The patterns are fluxcd/pkg ``oci/auth``'s, unchanged: the ECR expression is searched
  unanchored and its dots are not escaped (``.dkr.ecr.`` matches any character there), so
  the hosts v0.31 treated as ECR are exactly the ones treated as ECR here.
* Everything here is pure: no I/O, no environment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from imagereflector.registry.reference import InvalidReferenceError, parse_image_reference

AWS: Final = "aws"
AZURE: Final = "azure"
GCP: Final = "gcp"
GENERIC: Final = "generic"
CLOUDS: Final = (AWS, AZURE, GCP)

# fluxcd/pkg oci/auth/aws: Go's FindAllStringSubmatch, i.e. an unanchored search.
_ECR: Final = re.compile(r"([0-9+]*).dkr.ecr.([^/.]*)\.(amazonaws\.com[.cn]*)")
_ACR_SUFFIXES: Final = (".azurecr.io", ".azurecr.cn", ".azurecr.de", ".azurecr.us")


@dataclass(frozen=True, slots=True)
class AutologinFlags:
    """The deprecated ``--aws-autologin-for-ecr``/``--azure-…-acr``/``--gcp-…-gcr`` flags.

    They apply only to objects whose ``spec.provider`` is ``generic`` (or empty).
    """

    aws: bool = False
    azure: bool = False
    gcp: bool = False


@dataclass(frozen=True, slots=True)
class EcrRegistry:
    """The parts of an ECR registry host: account id and region (both may be empty)."""

    account: str
    region: str


@dataclass(frozen=True, slots=True)
class AzureCloud:
    """An Azure cloud: its name (as azidentity calls it) and its ARM endpoint."""

    name: str
    arm_endpoint: str

    @property
    def arm_scope(self) -> str:
        """The scope of the ARM token that is exchanged for an ACR refresh token."""
        return f"{self.arm_endpoint}/.default"


AZURE_PUBLIC: Final = AzureCloud("AzurePublic", "https://management.azure.com")
AZURE_CHINA: Final = AzureCloud("AzureChina", "https://management.chinacloudapi.cn")
AZURE_GOVERNMENT: Final = AzureCloud("AzureGovernment", "https://management.usgovcloudapi.net")


def parse_ecr(text: str) -> EcrRegistry | None:
    """Account and region of the first ECR host in ``text`` (a host or a whole image)."""
    match = _ECR.search(text)
    if match is None:
        return None
    return EcrRegistry(account=match.group(1), region=match.group(2))


def is_gcr_host(host: str) -> bool:
    """Container Registry (``gcr.io``, ``*.gcr.io``) or Artifact Registry (``*-docker.pkg.dev``)."""
    return host == "gcr.io" or host.endswith((".gcr.io", "-docker.pkg.dev"))


def is_acr_host(host: str) -> bool:
    """An Azure Container Registry host in any of the four clouds."""
    return host.endswith(_ACR_SUFFIXES)


def azure_cloud(host: str) -> AzureCloud:
    """The cloud of an ACR host: ``.azurecr.cn`` China, ``.azurecr.us`` Government, else Public."""
    if host.endswith(".azurecr.cn"):
        return AZURE_CHINA
    if host.endswith(".azurecr.us"):
        return AZURE_GOVERNMENT
    return AZURE_PUBLIC


def login_host(*, image: str, registry: str) -> str:
    """The string classification looks at: the parsed ``registry`` unless ``image`` has no ``/``.

    ``image`` is ``spec.image``; one trailing ``/`` is ignored, and an image without any
    other ``/`` (a bare registry address) is used as it is.
    """
    trimmed = image.removesuffix("/")
    return registry if "/" in trimmed else trimmed


def classify_host(host: str) -> str:
    """``aws``, ``gcp``, ``azure`` or ``generic``, checked in that order."""
    if parse_ecr(host) is not None:
        return AWS
    if is_gcr_host(host):
        return GCP
    if is_acr_host(host):
        return AZURE
    return GENERIC


def enabled_clouds(*, spec_provider: str, autologin: AutologinFlags) -> frozenset[str]:
    """The clouds an object may log in to: its own provider, or the flags for ``generic``."""
    if spec_provider in CLOUDS:
        return frozenset({spec_provider})
    flags = {AWS: autologin.aws, AZURE: autologin.azure, GCP: autologin.gcp}
    return frozenset(cloud for cloud, on in flags.items() if on)


def select_provider(*, spec_provider: str, host: str, autologin: AutologinFlags) -> str | None:
    """The cloud to log in to for ``host``, or None for anonymous access.

    None covers both a generic host and a cloud host whose login is not switched on (the
    contract's ``registry provider not configured``, which v0.31 ignores). Any
    ``spec_provider`` other than ``aws``/``azure``/``gcp`` (``generic``, empty) uses the
    ``autologin`` flags, as v0.31's ``default:`` branch does.
    """
    cloud = classify_host(host)
    if cloud == GENERIC:
        return None
    enabled = enabled_clouds(spec_provider=spec_provider, autologin=autologin)
    return cloud if cloud in enabled else None


# --- Flux v1.2 (fluxcd/pkg auth) ---------------------------------------------------------
# In v1.2 ``spec.provider`` decides the cloud and the host must belong to it; these are
# pkg/auth's anchored patterns and messages, and its ServiceAccount annotations.

ECR_PATTERN: Final = (
    r"^([0-9]{12})\.dkr[.-]ecr(?:-fips)?\.([a-zA-Z0-9][a-zA-Z0-9_-]{0,99})\."
    r"(amazonaws\.(?:com(?:\.cn)?|eu)|on\.(?:aws|amazonwebservices\.com\.cn)|sc2s\.sgov\.gov"
    r"|c2s\.ic\.gov|cloud\.adc-e\.uk|csp\.hci\.ic\.gov)$"
)
GCR_PATTERN: Final = r"^(((.+\.)?gcr\.io)|(.+-docker\.pkg\.dev)|(docker\.s3nsregistry\.fr))$"
ACR_PATTERN: Final = r"^.+\.(azurecr\.io|azurecr\.cn|azurecr\.de|azurecr\.us)$"
PUBLIC_ECR: Final = "public.ecr.aws"
_PUBLIC_ECR_HOSTS: Final = (PUBLIC_ECR, "ecr-public.aws.com")


def _go_regexp(pattern: str) -> re.Pattern[str]:
    """``pattern`` as Go's RE2 reads it: ``$`` is the very end, ``\\w`` is ASCII."""
    return re.compile(pattern.removesuffix("$") + r"\Z", re.ASCII)


_ECR_V12: Final = _go_regexp(ECR_PATTERN)
_GCR_V12: Final = _go_regexp(GCR_PATTERN)
_ACR_V12: Final = _go_regexp(ACR_PATTERN)

AWS_ROLE_ARN_ANNOTATION: Final = "eks.amazonaws.com/role-arn"
AWS_ROLE_ARN_PATTERN: Final = r"^arn:aws[\w-]*:iam::[0-9]{1,30}:role/.{1,200}$"
AZURE_CLIENT_ID_ANNOTATION: Final = "azure.workload.identity/client-id"
AZURE_TENANT_ID_ANNOTATION: Final = "azure.workload.identity/tenant-id"
GCP_SERVICE_ACCOUNT_ANNOTATION: Final = "iam.gke.io/gcp-service-account"
GCP_SERVICE_ACCOUNT_PATTERN: Final = (
    r"^[a-zA-Z0-9-]{1,100}@[a-zA-Z0-9-]{1,100}\.iam\.gserviceaccount\.com$")
GCP_WORKLOAD_IDENTITY_PROVIDER_ANNOTATION: Final = "gcp.auth.fluxcd.io/workload-identity-provider"
GCP_WORKLOAD_IDENTITY_PROVIDER_PATTERN: Final = (
    r"^projects/\d{1,30}/locations/global/workloadIdentityPools/[^/]{1,100}"
    r"/providers/[^/]{1,100}$")
AWS_AUDIENCE: Final = "sts.amazonaws.com"
AZURE_AUDIENCE: Final = "api://AzureADTokenExchange"
ACR_SCOPE: Final = "https://containerregistry.azure.net/.default"
"""v1.2's scope for ACR (azcontainerregistry's audience), the same in every Azure cloud."""
GCP_SCOPES: Final = ("https://www.googleapis.com/auth/cloud-platform",
                     "https://www.googleapis.com/auth/userinfo.email")


class RegistryMismatchError(ValueError):
    """The image's host does not belong to ``spec.provider``'s cloud (Flux's message)."""


def artifact_registry(image: str) -> str:
    """pkg/auth's ``GetRegistryFromArtifactRepository``: ``image`` minus a trailing ``/``;
    its parsed registry when it still has a ``/``, else the string itself."""
    trimmed = image.removesuffix("/")
    if "/" not in trimmed:
        return trimmed
    try:
        return parse_image_reference(trimmed).registry
    except InvalidReferenceError as err:
        raise RegistryMismatchError(
            f"failed to parse artifact repository '{image}': {err}") from None


def parse_artifact_repository(provider: str, image: str) -> str:
    """What identifies the registry to log in to (pkg/auth ``ParseArtifactRepository``):
    the ECR region or ``public.ecr.aws``, the ACR host, or ``gcp``.

    Raises ``RegistryMismatchError`` with Flux's ``invalid <cloud> registry`` message.
    """
    registry = artifact_registry(image)
    if provider == AWS:
        if registry in _PUBLIC_ECR_HOSTS:
            return PUBLIC_ECR
        match = _ECR_V12.match(registry)
        if match is None:
            raise RegistryMismatchError(
                f"invalid AWS registry: '{registry}'. must match {ECR_PATTERN}")
        return match.group(2)
    if provider == GCP:
        if _GCR_V12.match(registry) is None:
            raise RegistryMismatchError(
                f"invalid GCP registry: '{registry}'. must match {GCR_PATTERN}")
        return GCP
    if provider == AZURE:
        if _ACR_V12.match(registry) is None:
            raise RegistryMismatchError(
                f"invalid Azure registry: '{registry}'. must match {ACR_PATTERN}")
        return registry
    raise RegistryMismatchError(f"invalid provider: '{provider}'")


def legacy_registry_input(provider: str, *, image: str, host: str) -> str:
    """The same input under v0.31's rules (the host already classified as ``provider``'s):
    the region found anywhere in the image, the image's first path segment, or ``gcp``."""
    if provider == AWS:
        ecr = parse_ecr(image)
        return ecr.region if ecr is not None else ""
    if provider == AZURE:
        return image.split("/", 1)[0]
    return GCP if provider == GCP else host


class IdentityError(ValueError):
    """A ServiceAccount's annotations do not name a usable cloud identity (Flux's message)."""


def _annotations(account: dict[str, object]) -> dict[str, str]:
    metadata = account.get("metadata")
    found = metadata.get("annotations") if isinstance(metadata, dict) else None
    if not isinstance(found, dict):
        return {}
    return {str(k): str(v) for k, v in found.items() if isinstance(v, str)}


def aws_role_arn(account: dict[str, object]) -> str:
    """The role of ``eks.amazonaws.com/role-arn``; ``IdentityError`` unless it is one."""
    arn = _annotations(account).get(AWS_ROLE_ARN_ANNOTATION, "")
    if _go_regexp(AWS_ROLE_ARN_PATTERN).match(arn) is None:
        raise IdentityError(f"invalid {AWS_ROLE_ARN_ANNOTATION} annotation: '{arn}'. "
                            f"must match {AWS_ROLE_ARN_PATTERN}")
    return arn


def azure_identity(account: dict[str, object]) -> tuple[str, str]:
    """Tenant and client id from the ``azure.workload.identity/*`` annotations."""
    annotations = _annotations(account)
    if AZURE_TENANT_ID_ANNOTATION not in annotations:
        raise IdentityError("azure tenant ID is not set in the service account annotation "
                            f"{AZURE_TENANT_ID_ANNOTATION}")
    if AZURE_CLIENT_ID_ANNOTATION not in annotations:
        raise IdentityError("azure client ID is not set in the service account annotation "
                            f"{AZURE_CLIENT_ID_ANNOTATION}")
    return annotations[AZURE_TENANT_ID_ANNOTATION], annotations[AZURE_CLIENT_ID_ANNOTATION]


def gcp_service_account_email(account: dict[str, object]) -> str:
    """The Google service account to impersonate, "" for direct access."""
    email = _annotations(account).get(GCP_SERVICE_ACCOUNT_ANNOTATION, "")
    if email and _go_regexp(GCP_SERVICE_ACCOUNT_PATTERN).match(email) is None:
        raise IdentityError(f"invalid {GCP_SERVICE_ACCOUNT_ANNOTATION} annotation: '{email}'. "
                            f"must match {GCP_SERVICE_ACCOUNT_PATTERN}")
    return email


def gcp_workload_identity_provider_audience(account: dict[str, object]) -> str:
    """``//iam.googleapis.com/<provider>`` of the annotated workload identity provider
    (a cluster outside GKE), "" when there is none (GKE's own pool is used)."""
    provider = _annotations(account).get(GCP_WORKLOAD_IDENTITY_PROVIDER_ANNOTATION, "")
    if not provider:
        return ""
    if _go_regexp(GCP_WORKLOAD_IDENTITY_PROVIDER_PATTERN).match(provider) is None:
        raise IdentityError(
            f"invalid {GCP_WORKLOAD_IDENTITY_PROVIDER_ANNOTATION} annotation: '{provider}'. "
            f"must match {GCP_WORKLOAD_IDENTITY_PROVIDER_PATTERN}")
    return f"//iam.googleapis.com/{provider}"


def cloud_identity(provider: str, account: dict[str, object]) -> str:
    """pkg/auth ``GetIdentity``: the role ARN, ``tenant/client`` or the e-mail."""
    if provider == AWS:
        return aws_role_arn(account)
    if provider == AZURE:
        return "/".join(azure_identity(account))
    return gcp_service_account_email(account)
