"""A small typed Kubernetes client over ``kubernetes_asyncio``'s ApiClient.

Role: the only place that turns Kubernetes REST calls into Python. Everything above it gets
plain JSON dicts (camelCase, exactly as the API server sent them) and typed errors.

Invariants:
- Every request goes through ``_request``: it waits for a token of the client-side rate
  limiter (``--kube-api-qps``/``--kube-api-burst``), carries a timeout (watches get
  ``timeoutSeconds`` plus a grace period), and reports ``code``/``method``/``host`` to the
  :class:`RequestObserver` (``rest_client_requests_total``).
- Requests are sent with ``_preload_content=False`` and parsed here, so no generated model
  objects are built: the store keeps the compact dicts the server returned.
- Errors are :class:`NotFoundError`, :class:`ConflictError`, :class:`GoneError` or
  :class:`ApiError`; their messages come from the server's ``Status`` object and never
  include request bodies, so Secret data cannot leak into them.
- Proxy environment variables are honoured the way Go's ``ProxyFromEnvironment`` does:
  except for loopback API servers (``127.0.0.1``, ``::1``, ``localhost``), which are always
  reached directly. kubernetes_asyncio's session has ``trust_env=True``; we swap it for one
  with the right setting on the same connector (``ClientSession.detach`` is public).
"""

from __future__ import annotations

import asyncio
import builtins
import ipaddress
import json
import os
import random
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Protocol
from urllib.parse import quote, urlsplit

import aiohttp
import yaml
from aiohttp.http_exceptions import HttpProcessingError
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client import ApiClient, Configuration

from imagereflector.api import meta

JSONObject = dict[str, Any]
"""A Kubernetes object (or patch) as decoded JSON."""

PatchType = Literal["merge", "json", "strategic"]

_PATCH_CONTENT_TYPES: Final[Mapping[PatchType, str]] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}
# Watch events can carry large objects; etcd's default request limit is 1.5 MiB.
_MAX_WATCH_LINE: Final = 16 * 1024 * 1024
# Response headers of an API server with Priority and Fairness (API Priority and Fairness).
_APF_HEADERS: Final = ("X-Kubernetes-PF-FlowSchema-UID", "X-Kubernetes-PF-PriorityLevel-UID")
# Added to a watch's timeoutSeconds so the server, not the client, ends a healthy watch.
_WATCH_GRACE_SECONDS: Final = 30.0


@dataclass(frozen=True, slots=True)
class ResourceRef:
    """Where a kind of object lives in the REST API."""

    group: str
    """API group; ``""`` for the core group."""
    version: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        """``group/version``, or just ``version`` for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self,
        *,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
    ) -> str:
        """The REST path of the collection, an object, or an object's subresource.

        ``namespace=None`` on a namespaced resource addresses all namespaces (list/watch).
        """
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        parts = [base]
        if self.namespaced and namespace is not None:
            parts.append(f"namespaces/{_seg(namespace)}")
        parts.append(self.plural)
        if name is not None:
            parts.append(_seg(name))
            if subresource is not None:
                parts.append(_seg(subresource))
        return "/".join(parts)


def _seg(value: str) -> str:
    return quote(value, safe="")


IMAGE_REPOSITORIES: Final = ResourceRef(meta.GROUP, meta.VERSION, "imagerepositories")
IMAGE_POLICIES: Final = ResourceRef(meta.GROUP, meta.VERSION, "imagepolicies")
"""The image kinds at the contract's version; a client told otherwise
(:meth:`KubeClient.use_versions`, ``app.manager``) addresses them at the version the API
server serves."""
SECRETS: Final = ResourceRef("", "v1", "secrets")
SERVICE_ACCOUNTS: Final = ResourceRef("", "v1", "serviceaccounts")
NAMESPACES: Final = ResourceRef("", "v1", "namespaces", namespaced=False)
EVENTS: Final = ResourceRef("", "v1", "events")
LEASES: Final = ResourceRef("coordination.k8s.io", "v1", "leases")
CUSTOM_RESOURCE_DEFINITIONS: Final = ResourceRef(
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", namespaced=False
)


class KubeConfigError(Exception):
    """No usable Kubernetes client configuration: the kubeconfig is missing or broken."""


class ApiError(Exception):
    """A failed Kubernetes API call: ``status`` is the HTTP code, 0 for transport failures."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}" if status else f"{reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFoundError(ApiError):
    """404: the object (or its namespace) does not exist."""


class ConflictError(ApiError):
    """409: stale resourceVersion, or the object already exists on create."""


class GoneError(ApiError):
    """410: the requested resourceVersion is too old; the caller must relist."""


def _error_for(status: int, reason: str, message: str) -> ApiError:
    cls: type[ApiError] = {404: NotFoundError, 409: ConflictError, 410: GoneError}.get(
        status, ApiError
    )
    return cls(status, reason, message)


def error_from_status(status_obj: Mapping[str, Any], *, default_code: int = 500) -> ApiError:
    """Build the typed error for a ``Status`` object (a failed response or a watch ERROR)."""
    code = status_obj.get("code")
    status = code if isinstance(code, int) else default_code
    return _error_for(
        status, str(status_obj.get("reason") or "Unknown"), str(status_obj.get("message") or "")
    )


class RequestObserver(Protocol):
    """Counts API requests (bound to ``rest_client_requests_total`` by the metrics module)."""

    def observe_request(self, *, code: str, method: str, host: str) -> None:
        """Called once per request; ``code`` is the HTTP status or ``"<error>"``."""


@dataclass(frozen=True, slots=True)
class ObjectList:
    """One page of a list call."""

    items: list[JSONObject]
    resource_version: str
    continue_token: str | None


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One watch event: ADDED, MODIFIED, DELETED, BOOKMARK or ERROR (object is a Status)."""

    type: str
    object: JSONObject


class TokenBucket:
    """Client-side request limiter: ``qps`` tokens a second, at most ``burst`` saved up.

    Waiters reserve tokens in arrival order (the balance may go negative), so concurrent
    callers are spaced out instead of waking together. ``qps <= 0`` disables limiting.
    """

    def __init__(self, *, qps: float, burst: int, clock: Callable[[], float] | None = None) -> None:
        self._qps = qps
        self._burst = max(1, burst)
        self._tokens = float(self._burst)
        self._clock = clock
        self._last: float | None = None

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    @property
    def limited(self) -> bool:
        """False when ``qps <= 0`` turned limiting off."""
        return self._qps > 0

    def reserve(self) -> float:
        """Take one token; return how long the caller must wait before using it."""
        if self._qps <= 0:
            return 0.0
        now = self._now()
        if self._last is not None:
            self._tokens = min(float(self._burst), self._tokens + (now - self._last) * self._qps)
        self._last = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self._qps

    async def acquire(self) -> None:
        """Wait for a token."""
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost`` and loopback IPs, which Go never sends through a proxy."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_load_incluster: Callable[..., None] = k8s_config.load_incluster_config


async def load_api_client(*, kubeconfig: str | None = None) -> ApiClient:
    """Build an ApiClient the way controller-runtime resolves its config.

    Order: the explicit ``kubeconfig`` path (``--kubeconfig``), then ``$KUBECONFIG``, then the
    in-cluster service account, then ``~/.kube/config``.
    """
    configuration = Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not path:
        # The loader re-reads the projected token file as the kubelet rotates it.
        _load_incluster(client_configuration=configuration)
        return _with_proxy_rule(ApiClient(configuration=configuration))
    # KUBECONFIG may list several files; like kubectl, the first one wins here.
    file = await asyncio.to_thread(
        lambda: Path(path.split(os.pathsep)[0] if path else "~/.kube/config").expanduser())
    if not await asyncio.to_thread(file.is_file):
        # Checked here: the loader would log a stray "Config not found" line and then
        # call the missing file an invalid one.
        where = "--kubeconfig" if kubeconfig else "KUBECONFIG" if path else "the default"
        raise KubeConfigError(
            f"no kubeconfig at {file} ({where}): point KUBECONFIG or --kubeconfig at the "
            "kubeconfig of a cluster, or run inside a cluster")
    try:
        loader = await k8s_config.load_kube_config(
            config_file=str(file), client_configuration=configuration, persist_config=False)
    except (k8s_config.ConfigException, OSError, ValueError, yaml.YAMLError) as err:
        # One line: YAML errors span several, with a caret drawing.
        raise KubeConfigError(f"cannot use kubeconfig {file}: {' '.join(str(err).split())}"
                              ) from None
    _keep_exec_token_fresh(loader, configuration)
    return _with_proxy_rule(ApiClient(configuration=configuration))


# ``loader`` is kubernetes_asyncio's untyped KubeConfigLoader.
def _keep_exec_token_fresh(loader: Any, configuration: Configuration) -> None:
    """Run a kubeconfig's exec credential plugin again before its token expires.

    kubernetes_asyncio runs the plugin once, at load; the tokens of ``aws eks get-token``
    and similar plugins last minutes, so a long ``imagereflector controller`` run from a
    workstation would start getting 401s. Installed as the configuration's
    ``refresh_api_key_hook``, which the ApiClient awaits before each request: the loader
    re-runs the plugin only within five minutes of the token's ``expirationTimestamp``
    (its skew margin), so requests in between cost a timestamp comparison. A token with
    no expiry is used as long as the process lives, as kubectl does until a 401.
    """
    if getattr(loader, "exec_plugin_expiry", None) is None or not loader.token:
        return
    lock = asyncio.Lock()

    async def refresh(conf: Configuration) -> None:
        async with lock:  # one plugin run however many requests are waiting
            await loader.load_from_exec_plugin()
        conf.api_key["BearerToken"] = loader.token

    configuration.refresh_api_key_hook = refresh


def _with_proxy_rule(api_client: ApiClient) -> ApiClient:
    rest = api_client.rest_client
    old: aiohttp.ClientSession = rest.pool_manager
    host = urlsplit(str(api_client.configuration.host)).hostname
    rest.pool_manager = aiohttp.ClientSession(
        connector=old.connector,
        trust_env=not is_loopback_host(host),
        read_bufsize=2**21,
    )
    # Hands the connector over without closing it; the old session is then closed.
    old.detach()
    return api_client


class KubeClient:
    """The Kubernetes calls the controller needs, typed, rate limited and counted."""

    def __init__(
        self,
        api_client: ApiClient,
        *,
        qps: float = 50.0,
        burst: int = 300,
        request_timeout: float = 30.0,
        observer: RequestObserver | None = None,
    ) -> None:
        self._api = api_client
        self._qps, self._burst = qps, burst
        self._bucket = TokenBucket(qps=qps, burst=burst)
        self._timeout = request_timeout
        self._observer = observer
        self._host = urlsplit(str(api_client.configuration.host)).netloc
        # "plural.group" -> the API version to address it at (``use_versions``).
        self._versions: dict[str, str] = {}

    @classmethod
    async def connect(
        cls,
        *,
        kubeconfig: str | None = None,
        qps: float = 50.0,
        burst: int = 300,
        request_timeout: float = 30.0,
        observer: RequestObserver | None = None,
    ) -> KubeClient:
        """Load the configuration (see :func:`load_api_client`) and build a client."""
        api = await load_api_client(kubeconfig=kubeconfig)
        return cls(api, qps=qps, burst=burst, request_timeout=request_timeout, observer=observer)

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._api.close()

    def sibling(self) -> KubeClient:
        """A client on the same connection pool with a rate limit of its own.

        Events get one, as controller-runtime's event recorder has its own client: a burst
        of events must not delay status writes. Close only the original.
        """
        client = KubeClient(self._api, qps=self._qps if self.rate_limited else 0,
                            burst=self._burst, request_timeout=self._timeout,
                            observer=self._observer)
        client._versions = self._versions
        return client

    async def detect_priority_and_fairness(self) -> bool:
        """Turn the client-side rate limit off when the API server has Priority and Fairness.

        Flux (contract §4.1) ignores ``--kube-api-qps``/``--kube-api-burst`` then: the
        server queues and limits fairly itself. Its responses carry the APF headers.
        Returns whether the limit was turned off; any failure keeps the limit.
        """
        try:
            resp = await self._send("GET", "/livez/ping")
        except ApiError:
            return False
        try:
            enabled = any(header in resp.headers for header in _APF_HEADERS)
        finally:
            resp.release()
        if enabled:
            self._bucket = TokenBucket(qps=0, burst=1)
        return enabled

    def use_versions(self, versions: Mapping[str, str]) -> None:
        """Address each resource named ``plural.group`` in ``versions`` at that API version,
        whatever version its ``ResourceRef`` names.

        The controller learns at startup which version of the image kinds the API server
        serves (v1, or v1beta2 with Flux 2.2's CRDs) and every call follows that choice,
        while the code keeps naming the kinds by their constants (RBAC does not depend
        on the version).
        """
        self._versions.update(versions)

    def version_of(self, ref: ResourceRef) -> str:
        """The API version calls for ``ref`` use."""
        return self._versions.get(f"{ref.plural}.{ref.group}", ref.version)

    def _path(self, ref: ResourceRef, *, namespace: str | None = None, name: str | None = None,
              subresource: str | None = None) -> str:
        version = self.version_of(ref)
        if version != ref.version:
            ref = ResourceRef(ref.group, version, ref.plural, ref.namespaced)
        return ref.path(namespace=namespace, name=name, subresource=subresource)

    async def served_resources(self, group: str, versions: Iterable[str]
                               ) -> dict[str, builtins.list[str]]:
        """The resources (plurals) ``group`` serves in each of ``versions`` (discovery).

        A version the group does not serve (404, as a missing group is) maps to ``[]``.
        Other failures raise :class:`ApiError`. Discovery is readable by every
        authenticated identity (the ``system:discovery`` role), so this needs no RBAC.
        """
        served: dict[str, builtins.list[str]] = {}
        for version in versions:
            try:
                listed = await self._request("GET", f"/apis/{_seg(group)}/{_seg(version)}")
            except NotFoundError:
                served[version] = []
                continue
            served[version] = [str(resource.get("name")) for resource in
                               listed.get("resources") or [] if isinstance(resource, dict)]
        return served

    @property
    def rate_limited(self) -> bool:
        """Whether requests wait for the client-side token bucket."""
        return self._bucket.limited

    @property
    def host(self) -> str:
        """``host[:port]`` of the API server (the ``host`` metric label)."""
        return self._host

    # -- transport ---------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        *,
        query: Iterable[tuple[str, str]] = (),
        body: object = None,
        content_type: str = "application/json",
        client_timeout: aiohttp.ClientTimeout | None = None,
    ) -> aiohttp.ClientResponse:
        await self._bucket.acquire()
        code = "<error>"
        try:
            resp: aiohttp.ClientResponse = await self._api.call_api(
                path,
                method,
                query_params=list(query),
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=client_timeout or aiohttp.ClientTimeout(total=self._timeout),
            )
            code = str(resp.status)
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise ApiError(0, type(err).__name__, str(err) or "request failed") from err
        finally:
            if self._observer is not None:
                self._observer.observe_request(code=code, method=method, host=self._host)
        return resp

    async def _request(
        self,
        method: str,
        path: str,
        *,
        query: Iterable[tuple[str, str]] = (),
        body: object = None,
        content_type: str = "application/json",
    ) -> JSONObject:
        resp = await self._send(method, path, query=query, body=body, content_type=content_type)
        try:
            raw = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as err:
            raise ApiError(0, type(err).__name__, str(err) or "read failed") from err
        finally:
            resp.release()
        if not 200 <= resp.status <= 299:
            raise _error_from_body(resp.status, resp.reason or "", raw)
        try:
            decoded = json.loads(raw) if raw else {}
        except ValueError as err:
            raise ApiError(resp.status, "InvalidResponse", "response is not JSON") from err
        if not isinstance(decoded, dict):
            raise ApiError(resp.status, "InvalidResponse", "response is not a JSON object")
        return decoded

    # -- generic verbs -----------------------------------------------------------------------

    async def get(self, ref: ResourceRef, name: str, *, namespace: str | None = None) -> JSONObject:
        """GET one object."""
        return await self._request("GET", self._path(ref, namespace=namespace, name=name))

    async def list(
        self,
        ref: ResourceRef,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
        resource_version: str | None = None,
    ) -> ObjectList:
        """LIST one page; ``namespace=None`` lists all namespaces."""
        query: builtins.list[tuple[str, str]] = []
        if label_selector:
            query.append(("labelSelector", label_selector))
        if limit:
            query.append(("limit", str(limit)))
        if continue_token:
            query.append(("continue", continue_token))
        if resource_version is not None:
            query.append(("resourceVersion", resource_version))
        body = await self._request("GET", self._path(ref, namespace=namespace), query=query)
        items = body.get("items") or []
        list_meta = body.get("metadata") or {}
        return ObjectList(
            items=[item for item in items if isinstance(item, dict)],
            resource_version=str(list_meta.get("resourceVersion") or ""),
            continue_token=list_meta.get("continue") or None,
        )

    @asynccontextmanager
    async def watch(
        self,
        ref: ResourceRef,
        *,
        resource_version: str,
        timeout_seconds: int,
        namespace: str | None = None,
        label_selector: str | None = None,
        allow_bookmarks: bool = True,
    ) -> AsyncIterator[AsyncIterator[WatchEvent]]:
        """Open a watch stream; the yielded iterator ends when the server closes it.

        Leaving the context closes the response, which is how a blocked read is interrupted
        (cancel the task that iterates). A non-2xx answer raises the typed error; ERROR
        events are yielded as they come (the caller decides, e.g. 410 ⇒ relist).
        """
        query: builtins.list[tuple[str, str]] = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        if allow_bookmarks:
            query.append(("allowWatchBookmarks", "true"))
        if label_selector:
            query.append(("labelSelector", label_selector))
        timeout = aiohttp.ClientTimeout(
            total=timeout_seconds + _WATCH_GRACE_SECONDS,
            connect=self._timeout,
            sock_connect=self._timeout,
        )
        resp = await self._send(
            "GET", self._path(ref, namespace=namespace), query=query, client_timeout=timeout
        )
        try:
            if not 200 <= resp.status <= 299:
                raw = await resp.read()
                raise _error_from_body(resp.status, resp.reason or "", raw)
            yield _watch_events(resp)
        finally:
            resp.close()

    async def create(
        self, ref: ResourceRef, obj: Mapping[str, Any], *, namespace: str | None = None,
        name: str | None = None, subresource: str | None = None,
    ) -> JSONObject:
        """POST a new object (or, with ``name`` and ``subresource``, to an object's
        subresource, such as a ServiceAccount's ``token``); returns the server's answer."""
        path = self._path(ref, namespace=namespace, name=name if subresource else None,
                        subresource=subresource)
        return await self._request("POST", path, body=dict(obj))

    async def replace(
        self, ref: ResourceRef, obj: Mapping[str, Any], *, namespace: str | None = None
    ) -> JSONObject:
        """PUT an object (optimistic lock through its ``metadata.resourceVersion``)."""
        name = str(obj["metadata"]["name"])
        return await self._request("PUT", self._path(ref, namespace=namespace, name=name),
                                   body=dict(obj))

    async def patch(
        self,
        ref: ResourceRef,
        name: str,
        patch: object,
        *,
        namespace: str | None = None,
        subresource: str | None = None,
        patch_type: PatchType = "merge",
        field_manager: str | None = None,
    ) -> JSONObject:
        """PATCH an object or a subresource with an explicit content type."""
        query = [("fieldManager", field_manager)] if field_manager else []
        return await self._request(
            "PATCH",
            self._path(ref, namespace=namespace, name=name, subresource=subresource),
            query=query,
            body=patch,
            content_type=_PATCH_CONTENT_TYPES[patch_type],
        )

    async def delete(
        self, ref: ResourceRef, name: str, *, namespace: str | None = None
    ) -> JSONObject:
        """DELETE an object; returns the server's answer (the object or a Status)."""
        return await self._request("DELETE", self._path(ref, namespace=namespace, name=name))

    # -- the calls the controller makes ------------------------------------------------------

    async def get_secret(self, namespace: str, name: str) -> JSONObject:
        """GET a Secret. The result holds credentials: never log it."""
        return await self.get(SECRETS, name, namespace=namespace)

    async def get_service_account(self, namespace: str, name: str) -> JSONObject:
        """GET a ServiceAccount."""
        return await self.get(SERVICE_ACCOUNTS, name, namespace=namespace)

    async def create_service_account_token(self, namespace: str, name: str,
                                           audiences: Sequence[str]) -> str:
        """A token of ServiceAccount ``namespace/name`` for ``audiences`` (TokenRequest API,
        the server's default lifetime). The token is a credential: never log it."""
        request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "spec": {"audiences": list(audiences)}}
        answer = await self.create(SERVICE_ACCOUNTS, request, namespace=namespace, name=name,
                                   subresource="token")
        token = (answer.get("status") or {}).get("token")
        if not isinstance(token, str) or not token:
            raise ApiError(200, "InvalidResponse", "the TokenRequest answer carries no token")
        return token

    async def get_namespace(self, name: str) -> JSONObject:
        """GET a Namespace."""
        return await self.get(NAMESPACES, name)

    async def create_event(self, namespace: str, event: Mapping[str, Any]) -> JSONObject:
        """Create a core v1 Event."""
        return await self.create(EVENTS, event, namespace=namespace)

    async def patch_event(self, namespace: str, name: str, patch: Mapping[str, Any]) -> JSONObject:
        """Merge-patch a core v1 Event (count and lastTimestamp of a repeated event)."""
        return await self.patch(EVENTS, name, dict(patch), namespace=namespace)

    async def get_lease(self, namespace: str, name: str) -> JSONObject:
        """GET a coordination.k8s.io/v1 Lease."""
        return await self.get(LEASES, name, namespace=namespace)

    async def create_lease(self, namespace: str, lease: Mapping[str, Any]) -> JSONObject:
        """Create a Lease."""
        return await self.create(LEASES, lease, namespace=namespace)

    async def update_lease(self, namespace: str, lease: Mapping[str, Any]) -> JSONObject:
        """Replace a Lease (its resourceVersion makes this an optimistic-locked update)."""
        return await self.replace(LEASES, lease, namespace=namespace)

    async def apply_crds(self, paths: Iterable[Path]) -> builtins.list[str]:
        """Create the CustomResourceDefinitions in ``paths`` that do not exist yet.

        Existing CRDs are left untouched (``make run`` against a cluster someone manages).
        Returns the names created.
        """
        created: builtins.list[str] = []
        for path in paths:
            for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
                if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                    continue
                name = str(doc["metadata"]["name"])
                try:
                    await self.get(CUSTOM_RESOURCE_DEFINITIONS, name)
                except NotFoundError:
                    try:
                        await self.create(CUSTOM_RESOURCE_DEFINITIONS, doc)
                    except ConflictError:
                        continue  # created concurrently: same outcome
                    created.append(name)
        return created


async def _watch_events(resp: aiohttp.ClientResponse) -> AsyncIterator[WatchEvent]:
    while True:
        try:
            line = await resp.content.readline(max_line_length=_MAX_WATCH_LINE)
        # HttpProcessingError: an over-long line; RuntimeError: aiohttp's "Connection closed."
        # when the peer vanished mid-stream. Both are transport trouble, not bugs.
        except (aiohttp.ClientError, HttpProcessingError, TimeoutError, RuntimeError) as err:
            raise ApiError(0, type(err).__name__, str(err) or "watch read failed") from err
        if not line:
            return
        line = line.strip()
        if not line:
            continue
        try:
            decoded = json.loads(line)
        except ValueError as err:
            raise ApiError(resp.status, "InvalidResponse", "watch event is not JSON") from err
        obj = decoded.get("object") if isinstance(decoded, dict) else None
        if not isinstance(obj, dict):
            raise ApiError(resp.status, "InvalidResponse", "watch event without an object")
        yield WatchEvent(type=str(decoded.get("type") or ""), object=obj)


def _error_from_body(status: int, http_reason: str, raw: bytes) -> ApiError:
    try:
        decoded = json.loads(raw) if raw else None
    except ValueError:
        decoded = None
    if isinstance(decoded, dict) and decoded.get("kind") == "Status":
        return _error_for(
            status, str(decoded.get("reason") or http_reason), str(decoded.get("message") or "")
        )
    # Not a Status: report the HTTP reason only; a body could echo request content.
    return _error_for(status, http_reason or "Error", f"HTTP {status}")


def jittered(base: float, *, factor: float = 1.0) -> float:
    """``base`` stretched by up to ``factor`` (``[base, base*(1+factor)]``), for backoffs."""
    return base * (1.0 + random.random() * factor)  # noqa: S311 - jitter, not crypto
