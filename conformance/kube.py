"""An async admin client for the scenario objects (create, read, patch, delete, events).

The conformance runner creates objects for several peers at once and polls their status
many times a second, so it talks to the API server directly (aiohttp, the admin client
certificate of the test bed), not through kubectl. Only the kinds the scenarios use are
known here.

Invariant: every call names its object by (kind, namespace, name); a non-2xx answer
raises ``KubeError`` with the server's Status message, except a 404 on ``get`` and
``delete``, which mean "gone".
"""

from __future__ import annotations

import json
import ssl
from typing import Any, Final

import aiohttp

from testbed.cluster import Cluster

JSON = dict[str, Any]
IMAGE_GROUP: Final = "image.toolkit.fluxcd.io"
_PLURALS: Final = {
    "ImageRepository": ("apis", f"{IMAGE_GROUP}/v1beta2", "imagerepositories"),
    "ImagePolicy": ("apis", f"{IMAGE_GROUP}/v1beta2", "imagepolicies"),
    "Secret": ("api", "v1", "secrets"),
    "ServiceAccount": ("api", "v1", "serviceaccounts"),
    "Event": ("api", "v1", "events"),
    "Namespace": ("api", "v1", "namespaces"),
}


class KubeError(Exception):
    """The API server refused a call."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


def _path(kind: str, namespace: str | None, name: str | None = None,
          *, version: str | None = None) -> str:
    prefix, group_version, plural = _PLURALS[kind]
    if version is not None:
        group_version = f"{IMAGE_GROUP}/{version}"
    base = f"/{prefix}/{group_version}"
    if namespace is not None and kind != "Namespace":
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    return f"{base}/{name}" if name else base


class Kube:
    """Admin access to one cluster; use as an async context manager."""

    def __init__(self, cluster: Cluster) -> None:
        self.server = cluster.server
        context = ssl.create_default_context(cafile=str(cluster.pki_dir / "ca.crt"))
        context.load_cert_chain(str(cluster.pki_dir / "admin.crt"),
                                str(cluster.pki_dir / "admin.key"))
        self._ssl = context
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Kube:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._ssl, limit=32), trust_env=False,
            timeout=aiohttp.ClientTimeout(total=30))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(self, method: str, path: str, body: object = None, *,
                    content_type: str = "application/json", missing_ok: bool = False
                    ) -> JSON | None:
        assert self._session is not None, "use Kube as an async context manager"
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        async with self._session.request(method, self.server + path, data=data,
                                         headers=headers) as resp:
            text = await resp.text()
            if resp.status == 404 and missing_ok:
                return None
            if resp.status >= 400:
                try:
                    message = json.loads(text).get("message", text)
                except ValueError:
                    message = text
                raise KubeError(resp.status, f"{method} {path}: {message}")
            parsed: JSON = json.loads(text) if text else {}
            return parsed

    async def create(self, obj: JSON) -> JSON:
        """Create ``obj`` (its ``kind`` and ``metadata.namespace`` choose the path)."""
        meta = obj.get("metadata") or {}
        version = obj["apiVersion"].split("/", 1)[1] if obj["apiVersion"].startswith(
            IMAGE_GROUP) else None
        result = await self._call("POST", _path(obj["kind"], meta.get("namespace"),
                                                version=version), obj)
        assert result is not None
        return result

    async def get(self, kind: str, namespace: str | None, name: str) -> JSON | None:
        """The object, or None when it does not exist."""
        return await self._call("GET", _path(kind, namespace, name), missing_ok=True)

    async def list(self, kind: str, namespace: str | None) -> list[JSON]:
        """Every object of ``kind`` in ``namespace``."""
        result = await self._call("GET", _path(kind, namespace))
        assert result is not None
        items: list[JSON] = result.get("items") or []
        return items

    async def patch(self, kind: str, namespace: str | None, name: str, patch: JSON) -> JSON:
        """A JSON merge patch of the object's spec or metadata."""
        result = await self._call("PATCH", _path(kind, namespace, name), patch,
                                  content_type="application/merge-patch+json")
        assert result is not None
        return result

    async def delete(self, kind: str, namespace: str | None, name: str) -> None:
        """Delete the object (gone already is fine)."""
        await self._call("DELETE", _path(kind, namespace, name), missing_ok=True)
