"""``imagereflector install-crds``: make sure the cluster knows our two CRDs.

``make run`` calls it before starting the controller against the current kubeconfig
context. CRDs that already exist are left alone (Flux may own them: the schemas are the
same API). When no cluster answers, the error says so plainly and what to do.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from imagereflector.api.crd import write_all
from imagereflector.kube.client import KubeClient, KubeConfigError

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
                return await client.apply_crds(paths)
            except Exception as err:
                raise ClusterUnreachableError(
                    f"the Kubernetes API server at {client.host} did not answer ({err}); "
                    "check that the cluster of your current kubeconfig context is running "
                    "and reachable, or point KUBECONFIG at one") from err
    finally:
        await client.close()
