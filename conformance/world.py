"""The shared world of one conformance run: a real API server and real registries.

Every peer (our controller, Flux's) runs against the same kube-apiserver with the same
CRDs (``manifests/``), and scans the same ``docker-registry`` processes, so any
difference they show comes from the controllers. The world holds:

* the cluster (``testbed.cluster.Cluster``, built from the Go pins) with ``manifests/``
  applied server-side, and an admin client for creating scenario objects;
* five registries: anonymous plain http, htpasswd Basic, Bearer token auth (with its token
  server), https with a private CA, and mutual TLS;
* fronts made on demand: a fault front per scenario that breaks a registry (and heals
  it), a paginating front.

Invariants: everything binds 127.0.0.1; ``close`` stops every process and server the world
started, also after a failure; hosts of the world are known by role (``plain``,
``basic``, ...) so observations can name them without ports (``normalize``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.cluster import Cluster
from tests.fakes.certs import CertAuthority, KeyPair, make_ca
from tests.fakes.fronts import FaultFront, PaginatingFront
from tests.fakes.registry import TEST_CREDS, RegistryProcess, start_registry
from tests.fakes.tokenserver import TokenServer

JSON = dict[str, Any]
MANIFESTS = Path(__file__).resolve().parent.parent / "manifests"
CRDS = ("imagerepositories.image.toolkit.fluxcd.io", "imagepolicies.image.toolkit.fluxcd.io")
ROLES = ("plain", "basic", "token", "tls", "mtls")


@dataclass
class World:
    """Registries, their secrets and the cluster; see the module docstring."""

    cluster: Cluster
    tmp: Path
    registries: dict[str, RegistryProcess] = field(default_factory=dict)
    token_server: TokenServer | None = None
    ca: CertAuthority | None = None
    client_pair: KeyPair | None = None
    faults: dict[str, FaultFront] = field(default_factory=dict)
    pages: dict[str, PaginatingFront] = field(default_factory=dict)

    def host(self, role: str) -> str:
        """``127.0.0.1:PORT`` of a registry or front by role or front name."""
        if role in self.registries:
            return self.registries[role].host
        if role in self.faults:
            return self.faults[role].host
        return self.pages[role].host

    def hosts(self) -> dict[str, str]:
        """Every host the world serves, by the name observations show instead."""
        named = {role: reg.host for role, reg in self.registries.items()}
        named |= {name: front.host for name, front in self.faults.items()}
        named |= {name: front.host for name, front in self.pages.items()}
        if self.token_server is not None:
            named["token-realm"] = self.token_server.url.split("://", 1)[1]
        return named

    def registry_of(self, role: str) -> RegistryProcess:
        """The registry a role or front sits on (fronts forward to one)."""
        if role in self.registries:
            return self.registries[role]
        front = self.faults.get(role) or self.pages[role]
        return front.upstream

    async def fault_front(self, name: str, role: str = "plain") -> FaultFront:
        """A fault front called ``name`` before the ``role`` registry (made once)."""
        if name not in self.faults:
            front = FaultFront(self.registries[role])
            await front.start()
            self.faults[name] = front
        return self.faults[name]

    async def paginating_front(self, name: str, role: str = "plain",
                               max_page_size: int | None = None) -> PaginatingFront:
        """A paginating front called ``name`` before the ``role`` registry (made once);
        ``max_page_size`` makes it refuse larger ``n`` as hosted registries do."""
        if name not in self.pages:
            front = PaginatingFront(self.registries[role], max_page_size=max_page_size)
            await front.start()
            self.pages[name] = front
        return self.pages[name]

    # --- secrets the scenarios put in their namespaces --------------------------------

    def dockerconfig(self, role: str, creds: tuple[str, str] = TEST_CREDS) -> str:
        """A base64 ``.dockerconfigjson`` with ``creds`` for the ``role`` host."""
        user, password = creds
        auth = base64.b64encode(f"{user}:{password}".encode()).decode()
        doc = {"auths": {self.host(role): {"username": user, "password": password,
                                           "auth": auth}}}
        return base64.b64encode(json.dumps(doc).encode()).decode()

    def ca_pem_b64(self) -> str:
        """The registries' CA certificate, base64 (a Secret's ``ca.crt``)."""
        assert self.ca is not None
        return base64.b64encode(self.ca.cert_pem).decode()

    def client_b64(self) -> tuple[str, str]:
        """The mTLS client certificate and key, base64 (``tls.crt``, ``tls.key``)."""
        assert self.client_pair is not None
        return (base64.b64encode(self.client_pair.cert_pem).decode(),
                base64.b64encode(self.client_pair.key_pem).decode())

    async def close(self) -> None:
        """Stop every front, registry and the token server (not the cluster)."""
        for front in [*self.faults.values(), *self.pages.values()]:
            await front.close()
        for reg in self.registries.values():
            reg.stop()
        if self.token_server is not None:
            await self.token_server.close()


def install(cluster: Cluster) -> None:
    """``kubectl apply --server-side -k manifests/`` and wait for the CRDs (idempotent)."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(MANIFESTS),
                    timeout=120)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    *(f"crd/{name}" for name in CRDS), timeout=90)


async def start_world(cluster: Cluster, tmp: Path) -> World:
    """Start every registry the scenarios use; the caller owns ``close``."""
    world = World(cluster=cluster, tmp=tmp)
    try:
        world.ca = make_ca(tmp / "pki")
        server = world.ca.issue(tmp / "pki", "registry")
        world.client_pair = world.ca.issue(tmp / "pki", "client", server=False, client=True,
                                           sans=())
        world.registries["plain"] = await start_registry(tmp / "plain")
        world.registries["basic"] = await start_registry(tmp / "basic", htpasswd=TEST_CREDS)
        world.token_server = TokenServer(tmp / "token", users=dict([TEST_CREDS]))
        await world.token_server.start()
        world.registries["token"] = await start_registry(tmp / "token-reg",
                                                         token=world.token_server)
        world.registries["tls"] = await start_registry(tmp / "tls", tls=server, ca=world.ca)
        world.registries["mtls"] = await start_registry(
            tmp / "mtls", tls=server, client_ca=world.ca.cert_file, ca=world.ca,
            client=world.client_pair)
    except BaseException:
        await world.close()
        raise
    return world


def seed(world: World, role: str, repo: str, tags: Mapping[str, None] | list[str]) -> None:
    """Write ``tags`` of ``repo`` into the registry behind ``role`` (served at once)."""
    world.registry_of(role).write_tags(repo, list(tags))
