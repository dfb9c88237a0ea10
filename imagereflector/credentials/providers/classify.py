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
