"""``imagereflector install-crds``: make sure the cluster knows our two CRDs.

``make run`` calls it before starting the controller against the current kubeconfig
context. CRDs that already exist are left alone (Flux may own them, and replacing a CRD
is the operator's decision: docs/operations.md). The controller then uses what they
serve: v1 when served, else v1beta2 (Flux 2.2's and 2.6's CRDs); a CRD without v1 is
named in a warning, with the way to serve v1 too. When no cluster answers, the error says
so plainly and what to do.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from imagereflector.api import meta
from imagereflector.api.crd import write_all
from imagereflector.kube.client import ApiError, KubeClient, KubeConfigError

log = logging.getLogger("imagereflector.install")


class ClusterUnreachableError(Exception):
    """No Kubernetes API server could be reached with the current configuration."""


async def install_crds(*, kubeconfig: str | None) -> list[str]:
    """Create the CRDs that are missing; returns the names created."""
    try:
        client = await KubeClient.connect(kubeconfig=kubeconfig, request_timeout=10.0)
    except KubeConfigError as err:
        raise ClusterUnreachableError(str(err)) from err
    except Exception as err:
        raise ClusterUnreachableError(
            f"cannot load a Kubernetes configuration ({err}); set KUBECONFIG or pass "
            "--kubeconfig, or create a local cluster (kind, k3d, minikube) first") from err
    try:
        with tempfile.TemporaryDirectory(prefix="imagereflector-crds-") as tmp:
            paths = write_all(Path(tmp))
            try:
                created = await client.apply_crds(paths)
                await _warn_without_v1(client, just_created=created)
                return created
            except Exception as err:
                raise ClusterUnreachableError(
                    f"the Kubernetes API server at {client.host} did not answer ({err}); "
                    "check that the cluster of your current kubeconfig context is running "
                    "and reachable, or point KUBECONFIG at one") from err
    finally:
        await client.close()


async def _warn_without_v1(client: KubeClient, *, just_created: list[str]) -> None:
    """Say which image kinds the cluster serves without v1 (left alone, used as v1beta2).

    CRDs created a moment ago are ours and serve v1; discovery may not list them yet."""
    try:
        served = await client.served_resources(meta.GROUP, [meta.V1])
    except ApiError:
        return  # discovery is only for this hint; the controller decides on its own
    for plural in ("imagerepositories", "imagepolicies"):
        if f"{plural}.{meta.GROUP}" in just_created:
            continue
        if plural not in served.get(meta.V1, []):
            log.warning(
                "CustomResourceDefinition %s.%s exists without version v1 and was left as "
                "it is; the controller will use v1beta2. To serve v1 as well, apply "
                "manifests/crds (docs/operations.md, 'Upgrading')", plural, meta.GROUP)
