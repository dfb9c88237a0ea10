"""No credential ever leaves its Secret (contract A11), whatever way a scan fails.

One running controller (on the real API server, as the manifests' ServiceAccount)
scans real registries for objects whose Secrets hold unique
planted values: a registry password (answered with 401), an identity token and a
registry token, cloud-style tokens for other hosts in the same dockerconfigjson, a proxy
password the real tinyproxy refuses, a TLS client key in front of an https registry whose
CA the object does not trust, and an unusable key pair. After every object has failed the
way it should, every output is searched: all log records of ``imagereflector`` at DEBUG
(with tracebacks), every Kubernetes Event, every version of every status the API server
stored, and the ``/metrics`` exposition. None contains a planted value, its base64 form,
or the base64 ``user:password`` pair. A known-good object with real credentials in the
same cluster ends Ready, so the comparison runs against a controller that was working.

Also here: an unparsable ``spec.image`` with ``user:password@`` in front of a digest
reference must be redacted like every other unparsable reference.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from imagereflector.api import meta
from imagereflector.registry.reference import InvalidReferenceError, parse_image_reference
from tests.badinput import corpus
from tests.badinput.support import b64, ready_of, secret
from tests.controllers.harness import has_ready_reason, is_ready_with, repository
from tests.controllers.realharness import REPOS, KubeTest, recorded_statuses, start_cluster
from tests.fakes.certs import make_ca
from tests.fakes.proxy import PROXY_USER, running_tinyproxy
from tests.fakes.registry import TEST_CREDS, RegistryProcess

PASSWORD = "Leak-Registry-Pw-4c1d9e"
IDENTITY_TOKEN = "Leak-Identity-Token-8b2f"
REGISTRY_TOKEN = "Leak-Registry-Token-e7a0"
AWS_TOKEN = "AKIALEAKPLANTED0000X1"
GCP_TOKEN = "ya29.Leak-Gcp-Access-Token-55d3"
AZURE_TOKEN = "Leak-Acr-Refresh-Token-2a9c"
PROXY_PASSWORD = "Leak-Proxy-Pw-0f3b"
KEY_MARKER = "Leak-Key-Bytes-71e4"


def dockerconfig(auths: dict[str, dict[str, str]]) -> dict[str, str]:
    return {".dockerconfigjson": b64(json.dumps({"auths": auths}))}


def forms(value: str, user: str = TEST_CREDS[0]) -> list[str]:
    """A planted value as it could leak: raw, base64, and inside base64 ``user:value``."""
    return [value, b64(value), b64(f"{user}:{value}"), b64(f"{PROXY_USER}:{value}")]


async def test_no_planted_value_in_any_output(basic_registry: RegistryProcess,
                                              tls_registry: RegistryProcess, tmp_path: Path,
                                              kube: KubeTest,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="imagereflector")
    basic_registry.write_tags("app", ["1.0.0", "1.1.0"])
    tls_registry.write_tags("app", ["1.0.0"])
    basic = basic_registry.host
    other_ca = make_ca(tmp_path / "other-pki", "untrusted-ca")
    client = other_ca.issue(tmp_path / "other-pki", "client", server=False, client=True,
                            sans=())
    key_lines = [line for line in client.key_pem.decode().splitlines()
                 if line and not line.startswith("-----")]
    planted = [*forms(PASSWORD), *forms(IDENTITY_TOKEN), *forms(REGISTRY_TOKEN),
               *forms(AWS_TOKEN), *forms(GCP_TOKEN), *forms(AZURE_TOKEN),
               *forms(PROXY_PASSWORD), *forms(KEY_MARKER), b64(client.key_pem), *key_lines]
    leaks = kube.namespace("leaks")
    async with running_tinyproxy(tmp_path / "proxy") as proxy, \
            start_cluster(kube) as cluster, recorded_statuses(kube) as log:
        objects: dict[str, tuple[dict[str, Any], str, dict[str, str]]] = {
            "wrong-password": ({"secretRef": {"name": "wrong-password"}}, basic, dockerconfig({
                basic: {"username": TEST_CREDS[0], "password": PASSWORD}})),
            "tokens": ({"secretRef": {"name": "tokens"}}, basic, dockerconfig({
                basic: {"identitytoken": IDENTITY_TOKEN, "registrytoken": REGISTRY_TOKEN}})),
            "cloud": ({"secretRef": {"name": "cloud"}}, basic, dockerconfig({
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com": {
                    "auth": b64(f"AWS:{AWS_TOKEN}")},
                "gcr.io": {"username": "oauth2accesstoken", "password": GCP_TOKEN},
                "leak.azurecr.io": {"username": "00000000-0000-0000-0000-000000000000",
                                    "password": AZURE_TOKEN},
                basic: {"auth": b64(f"{TEST_CREDS[0]}:{PASSWORD}")}})),
        }
        for name, (ref, _, data) in objects.items():
            cluster.api.create(secret(name, "kubernetes.io/dockerconfigjson", data,
                                      namespace=leaks))
            cluster.api.create(repository(name, f"{basic}/app", namespace=leaks, **ref))
        cluster.api.create(secret("proxy", "Opaque", {
            "address": b64(proxy.address), "username": b64(PROXY_USER),
            "password": b64(PROXY_PASSWORD)}, namespace=leaks))
        cluster.api.create(repository("proxied", f"{basic}/app", namespace=leaks,
                                      proxySecretRef={"name": "proxy"}))
        cluster.api.create(secret("untrusted", "kubernetes.io/tls", {
            "tls.crt": b64(client.cert_pem), "tls.key": b64(client.key_pem),
            "ca.crt": b64(other_ca.cert_pem)}, namespace=leaks))
        cluster.api.create(repository("untrusted", f"{tls_registry.host}/app", namespace=leaks,
                                      certSecretRef={"name": "untrusted"}))
        broken_key = (b"-----BEGIN PRIVATE KEY-----\n" + base64.b64encode(KEY_MARKER.encode())
                      + b"\n-----END PRIVATE KEY-----\n")
        cluster.api.create(secret("broken-key", "Opaque", {
            "tls.crt": b64(client.cert_pem), "tls.key": b64(broken_key)}, namespace=leaks))
        cluster.api.create(repository("broken-key", f"{tls_registry.host}/app",
                                      namespace=leaks, certSecretRef={"name": "broken-key"}))
        cluster.api.create(secret("good", "kubernetes.io/dockerconfigjson", dockerconfig({
            basic: {"auth": b64(":".join(TEST_CREDS))}}), namespace=leaks))
        cluster.api.create(repository("good", f"{basic}/app", namespace=leaks,
                                      secretRef={"name": "good"}))

        for name in ("wrong-password", "tokens", "cloud", "proxied", "untrusted"):
            obj = await cluster.wait_for(REPOS, leaks, name,
                                         has_ready_reason(meta.READ_OPERATION_FAILED_REASON))
            assert ready_of(obj).message.startswith("scan failed: "), name
        await cluster.wait_for(REPOS, leaks, "broken-key",
                               has_ready_reason(meta.AUTHENTICATION_FAILED_REASON))
        await cluster.wait_for(REPOS, leaks, "good", is_ready_with("found 2 tags"))
        # Let each failing object retry once more, so the retry paths are searched too.
        before = len(log.versions())
        await cluster.wait_for(REPOS, leaks, "good",
                               lambda _: len(log.versions()) >= before + 5)
        await cluster.manager.events.flush()
        outputs = {
            "logs": caplog.text,
            "log arguments": "\n".join(repr(r.args) for r in caplog.records),
            "events": json.dumps(cluster.api.list("events")),
            "statuses": json.dumps([o.get("status") for o in await log.sync()]),
            "metrics": await cluster.scrape(),
        }
    assert len(caplog.records) > 20
    for where, text in outputs.items():
        leaked = [value for value in planted if value in text]
        assert leaked == [], f"{where} leaks {leaked}"


@pytest.mark.parametrize("image", corpus.USERINFO_BEFORE_DIGEST)
def test_userinfo_before_a_digest_is_redacted(image: str) -> None:
    with pytest.raises(InvalidReferenceError) as raised:
        parse_image_reference(image)
    assert corpus.PLANTED_PASSWORD not in str(raised.value)
    assert str(raised.value).startswith("could not parse reference: <redacted>@")
