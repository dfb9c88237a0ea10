"""Property tests: no input string or byte string makes the controller's parsing crash.

* Any ``spec.image`` text, run through the real ``ImageRepositoryReconciler`` (with small
  in-memory fakes for the API server, the tag store and the registry lister), ends in one
  of exactly two states: scanned (Ready ``Succeeded``, canonical name from the parser) or
  Stalled ``ImageURLInvalid`` with one of the contract's three messages; the reconcile
  never raises, and the lister is only ever called with a parsed reference.
* A ``user:password@`` typed in front of a registry never shows its password in the
  message (the digest-suffixed variants that do are in ``tests/security``).
* The weakly validated references of go-containerregistry parse with their canonical name.
* Any bytes as ``.dockerconfigjson`` (or as a dockercfg, or as the base64 text of the
  Secret's ``data``) raise only ``DockerConfigError``/``CredentialsError`` through the
  real resolver, and a password planted in any JSON shape never appears in the message.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import functools
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from imagereflector.api import meta
from imagereflector.api.imagerepository import ImageRepositorySpec
from imagereflector.controllers.imagerepository import (
    ImageRepositoryReconciler,
    RepositoryDeps,
)
from imagereflector.credentials import dockerconfig
from imagereflector.credentials.resolver import CredentialResolver, CredentialsError
from imagereflector.kube import conditions as cond
from imagereflector.kube.client import ApiError
from imagereflector.kube.reconcile import Result
from imagereflector.metrics import Metrics
from imagereflector.registry.reference import (
    ImageReference,
    InvalidReferenceError,
    parse_image_reference,
)
from imagereflector.registry.types import Credentials, ProxyConfig, TLSConfig
from imagereflector.store.base import ObjectKey, StoredScan
from tests.badinput import corpus
from tests.controllers.harness import conditions_of

JSON = dict[str, Any]
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
MESSAGE_PREFIXES = (".spec.image value should not start with URL scheme; remove '",
                    "could not parse reference: ",
                    ".spec.image value should not contain a tag; remove ':")
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def _merge(target: JSON, patch: JSON) -> JSON:
    """RFC 7386 JSON merge patch."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


class FakeAPI:
    """One stored object; patches are merged into it, each bumps the resourceVersion."""

    def __init__(self, obj: JSON) -> None:
        self.obj = copy.deepcopy(obj)

    async def get(self, ref: Any, name: str, *, namespace: str | None = None) -> JSON:
        return copy.deepcopy(self.obj)

    async def patch(self, ref: Any, name: str, patch: object, *, namespace: str | None = None,
                    subresource: str | None = None, patch_type: str = "merge",
                    field_manager: str | None = None) -> JSON:
        assert isinstance(patch, dict)
        body = {k: v for k, v in patch.items() if k != "metadata" or subresource is None}
        body.get("metadata", {}).pop("resourceVersion", None)
        _merge(self.obj, body)
        meta_ = self.obj["metadata"]
        meta_["resourceVersion"] = str(int(meta_.get("resourceVersion", "1")) + 1)
        return copy.deepcopy(self.obj)


class MemoryStore:
    """The tag store in a dict."""

    def __init__(self) -> None:
        self.rows: dict[ObjectKey, tuple[StoredScan, list[str]]] = {}

    @property
    def is_open(self) -> bool:
        return True

    async def set_tags(self, key: ObjectKey, *, canonical_image: str, tags: Sequence[str],
                       revision: str, scan_time: datetime) -> None:
        self.rows[key] = (StoredScan(canonical_image, revision, scan_time, len(tags)),
                          list(tags))

    async def tags(self, key: ObjectKey) -> list[str]:
        return list(self.rows[key][1]) if key in self.rows else []

    async def scan(self, key: ObjectKey) -> StoredScan | None:
        return self.rows[key][0] if key in self.rows else None

    async def delete(self, key: ObjectKey) -> None:
        self.rows.pop(key, None)

    async def keys(self) -> list[ObjectKey]:
        return list(self.rows)

    async def check(self, *, quick_check: bool = False) -> bool:
        return True

    async def close(self) -> None:
        self.rows.clear()


def error_text(call: Callable[[], object], *errors: type[Exception]) -> str | None:
    """The text of the expected error ``call`` raises, None when it returns."""
    try:
        call()
    except errors as err:
        return str(err)
    return None


class RecordingLister:
    """A registry with two tags that remembers which references it was asked about."""

    def __init__(self) -> None:
        self.refs: list[ImageReference] = []

    async def list_tags(self, ref: ImageReference, *, credentials: Credentials | None = None,
                        tls: TLSConfig | None = None, proxy: ProxyConfig | None = None,
                        timeout: float) -> list[str]:  # noqa: ASYNC109 - the seam's signature
        self.refs.append(ref)
        return ["1.0.0", "2.0.0"]


class NoObjects:
    """An API with no Secrets or ServiceAccounts at all."""

    async def get_secret(self, namespace: str, name: str) -> JSON:
        raise ApiError(404, "NotFound", f'secrets "{name}" not found')

    async def get_service_account(self, namespace: str, name: str) -> JSON:
        raise ApiError(404, "NotFound", f'serviceaccounts "{name}" not found')


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def record(self, obj: Any, *, type: str, reason: str, message: str) -> None:
        self.seen.append((type, reason, message))


async def _reconcile_image(image: str) -> tuple[JSON, Result, RecordingLister, Events]:
    api = FakeAPI({"apiVersion": "image.toolkit.fluxcd.io/v1beta2", "kind": "ImageRepository",
                   "metadata": {"name": "fuzz", "namespace": "default", "generation": 1,
                                "resourceVersion": "1"},
                   "spec": {"image": image, "interval": "1h"}})
    lister, events = RecordingLister(), Events()
    deps = RepositoryDeps(client=api, store=MemoryStore(), lister=lister,
                          resolver=CredentialResolver(reader=NoObjects()), events=events,
                          metrics=Metrics(CollectorRegistry()), now=lambda: NOW)
    result = await ImageRepositoryReconciler(deps).reconcile(copy.deepcopy(api.obj))
    return api.obj, result, lister, events


_REFERENCE_ALPHABET = "abcxyz019AZ._-/:@ \täé\n"
image_text = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=_REFERENCE_ALPHABET, max_size=60),
    st.builds(lambda host, path: f"{host}/{path}",
              st.sampled_from(["ghcr.io", "127.0.0.1:5000", "localhost:1", "[::1]:80", "a.b",
                               "docker.io", "Host.IO", "h:99999", ""]),
              st.text(alphabet="abz09._-/:@", max_size=40)),
)


@FUZZ
@given(image_text)
@example("ghcr.io/app")
@example("alpine")
@example("https://ghcr.io/app")
@example("ghcr.io/app:1.0@sha256:" + "a" * 64)
def test_any_image_text_ends_scanned_or_image_url_invalid(image: str) -> None:
    obj, result, lister, events = asyncio.run(_reconcile_image(image))
    conditions = conditions_of(obj)
    ready = cond.get(conditions, meta.READY)
    assert ready is not None
    error = error_text(lambda: parse_image_reference(image), InvalidReferenceError)
    if error is not None:
        assert ready.status == "False"
        assert ready.reason == meta.IMAGE_URL_INVALID_REASON
        assert ready.message == error
        assert ready.message.startswith(MESSAGE_PREFIXES)
        stalled = cond.get(conditions, meta.STALLED)
        assert stalled is not None
        assert stalled.status == "True"
        assert result == Result()
        assert lister.refs == []
        assert events.seen == [("Warning", meta.IMAGE_URL_INVALID_REASON, error)]
    else:
        ref = parse_image_reference(image)
        assert (ready.status, ready.reason) == ("True", meta.SUCCEEDED_REASON)
        assert ready.message == "successful scan: found 2 tags"
        assert obj["status"]["canonicalImageName"] == ref.canonical
        assert lister.refs == [ref]
        assert result.requeue_after == 3600.0


_SECRETISH = st.text(alphabet="ABCDEFGHJKmnpqrstuvwxyz23456789-_!$%", min_size=8, max_size=24)


@FUZZ
@given(user=st.text(alphabet="abcrobot-_.", min_size=1, max_size=10), password=_SECRETISH,
       host=st.sampled_from(["ghcr.io", "127.0.0.1:5000", "registry.example.com", "a", ""]),
       rest=st.sampled_from(["/app", "/team/app", "/app:1.0", "/App", "", "/a b", "@", "/app@"]))
def test_userinfo_in_an_image_never_reaches_the_message(user: str, password: str, host: str,
                                                        rest: str) -> None:
    image = f"{user}:{password}@{host}{rest}"
    with pytest.raises(InvalidReferenceError) as raised:
        parse_image_reference(image)
    assert password not in str(raised.value)


@pytest.mark.parametrize(("image", "canonical"), corpus.WEAK_BUT_VALID_IMAGES)
def test_weakly_validated_references_parse(image: str, canonical: str) -> None:
    assert parse_image_reference(image).canonical == canonical


def _resolve_with(secret: JSON, *, image: str = "127.0.0.1:5000/app",
                  spec: JSON | None = None) -> Any:
    class Reader:
        async def get_secret(self, namespace: str, name: str) -> JSON:
            return secret

        async def get_service_account(self, namespace: str, name: str) -> JSON:
            return {"imagePullSecrets": [{"name": "creds"}]}

    resolver = CredentialResolver(reader=Reader())
    model = ImageRepositorySpec.model_validate({"image": image, **(spec or {})})
    return asyncio.run(resolver.resolve(namespace="default", spec=model,
                                        ref=parse_image_reference(image)))


@FUZZ
@given(st.binary(max_size=300))
@example(b"")
@example(b"\xff\xfe")
@example(b'{"auths": {"127.0.0.1:5000": {"auth": "\xff"}}}')
@example(b'{"auths": {"http://": {}}}')
@example(b'{"auths": {"\\ud800": {"auth": "\\ud800"}}}')
def test_any_bytes_as_dockerconfigjson_raise_only_the_documented_errors(data: bytes) -> None:
    for parse in (dockerconfig.parse_dockerconfigjson, dockerconfig.parse_dockercfg):
        try:
            config = parse(data)
            config.lookup("127.0.0.1:5000")
            dockerconfig.keyring_lookup([config], "127.0.0.1:5000/app")
        except dockerconfig.DockerConfigError:
            pass
    encoded = base64.b64encode(data).decode()
    for type_, key in (("kubernetes.io/dockerconfigjson", ".dockerconfigjson"),
                       ("kubernetes.io/dockercfg", ".dockercfg")):
        for spec in ({"secretRef": {"name": "creds"}}, {"serviceAccountName": "puller"}):
            secret = {"metadata": {"name": "creds"}, "type": type_, "data": {key: encoded}}
            with contextlib.suppress(CredentialsError):
                _resolve_with(secret, spec=spec)


@FUZZ
@given(st.text(max_size=60))
def test_any_text_as_secret_data_raises_only_credentials_error(raw: str) -> None:
    secret = {"metadata": {"name": "creds"}, "type": "kubernetes.io/dockerconfigjson",
              "data": {".dockerconfigjson": raw}}
    message = error_text(lambda: _resolve_with(secret, spec={"secretRef": {"name": "creds"}}),
                         CredentialsError)
    assert message is None or len(raw) < 4 or raw not in message


_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                       st.text(max_size=10), st.just(corpus.PLANTED_PASSWORD))
_json = st.recursive(_json_leaf, lambda children: st.one_of(
    st.lists(children, max_size=4),
    st.dictionaries(st.sampled_from(["auths", "auth", "username", "password", "identitytoken",
                                     "registrytoken", "127.0.0.1:5000", "x"]),
                    children, max_size=5)), max_leaves=20)


def _lookup(data: bytes) -> Credentials | None:
    return dockerconfig.parse_dockerconfigjson(data).lookup("127.0.0.1:5000")


@FUZZ
@given(_json, st.sampled_from(["password", "auth", "identitytoken", "registrytoken",
                               "username"]))
def test_a_planted_secret_never_reaches_a_dockerconfig_message(shape: Any, field_: str) -> None:
    planted_auth = base64.b64encode(corpus.PLANTED_PASSWORD.encode()).decode()
    entry = {field_: planted_auth if field_ == "auth" else corpus.PLANTED_PASSWORD}
    for document in (shape, {"auths": shape}, {"auths": {"127.0.0.1:5000": shape}},
                     {"auths": {"127.0.0.1:5000": {**entry, "extra": shape}}},
                     {"auths": {"127.0.0.1:5000": [entry, shape]}}):
        data = json.dumps(document).encode()
        message = error_text(
            functools.partial(_lookup, data),
            dockerconfig.DockerConfigError) or ""
        assert corpus.PLANTED_PASSWORD not in message
        assert planted_auth not in message
