"""Image references: parsing and canonicalisation with Docker's rules (contract §2.4).

An ``ImageReference`` names a repository (never a tag or digest). Its ``canonical`` form
makes every implied part explicit (``alpine`` → ``index.docker.io/library/alpine``) and is
what status reports as ``canonicalImageName``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final, Literal

DOCKER_HUB_REGISTRY: Final = "index.docker.io"

_LOCAL_HOST = re.compile(r".*\.local(?:host)?(?::\d{1,5})?\Z")


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A parsed repository reference: registry host[:port] and repository path."""

    registry: str
    repository: str
    insecure: bool = False

    @property
    def canonical(self) -> str:
        """``registry/repository`` with implied parts explicit."""
        return f"{self.registry}/{self.repository}"

    @property
    def scheme(self) -> Literal["http", "https"]:
        """``http`` when asked (insecure) or for local and private hosts, else ``https``.

        For ``http`` the client still tries https first (as Docker clients do) and falls
        back to plain http; see ``registry.client``.
        """
        if self.insecure:
            return "http"
        host = self.registry
        if host.startswith("localhost:") or _LOCAL_HOST.match(host):
            return "http"
        if "127.0.0.1" in host or "::1" in host:
            return "http"
        bare = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        try:
            address = ipaddress.ip_address(bare)
        except ValueError:
            return "https"
        if isinstance(address, ipaddress.IPv4Address) and address.is_private and any(
            address in ipaddress.ip_network(net)
            for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
        ):
            return "http"
        return "https"
