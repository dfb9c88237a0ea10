"""The conformance corpus: every situation a user can put either controller in.

Each scenario names what it covers (condition reasons, messages, features) so the report
can show that the corpus covers the contract. Registry content is seeded under
``conf/<scenario>/...`` so scenarios never share a repository.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Sequence

from conformance.model import (
    JSON,
    Scenario,
    Space,
    Step,
    both,
    break_front,
    delete_step,
    heal_front,
    label_namespace,
    patch_step,
    policy,
    push,
    repository,
    request_reconcile,
    secret,
    service_account,
)
from conformance.world import World
from tests.fakes.registry import TEST_CREDS

SEMVER_TAGS = ["1.0.0", "1.0.1", "1.1.0", "1.2.0-rc.1", "2.0.0", "v2.1.0", "latest"]
WRONG_CREDS = ("testuser", "not-the-password")


def _repo(name: str, part: str = "app") -> str:
    return f"conf/{name}/{part}"


def _seeded(role: str, name: str, tags: Sequence[str], part: str = "app"
            ) -> Callable[[World], Awaitable[None]]:
    async def prepare(world: World) -> None:
        world.registry_of(role).write_tags(_repo(name, part), list(tags))
    return prepare


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _image(world: World, role: str, name: str, part: str = "app") -> str:
    return f"{world.host(role)}/{_repo(name, part)}"


# --- ImageRepository: scanning ------------------------------------------------------------


def _basic_scan(world: World) -> Sequence[JSON]:
    return [repository("app", _image(world, "plain", "scan"))]


def _exclusions(world: World) -> Sequence[JSON]:
    return [repository("default-list", _image(world, "plain", "exclude")),
            repository("custom", _image(world, "plain", "exclude"),
                       exclusionList=["^v", "-rc"]),
            repository("bad-regex", _image(world, "plain", "exclude"),
                       exclusionList=["[="])]


def _invalid_images(world: World) -> Sequence[JSON]:
    host = world.host("plain")
    return [repository("with-tag", f"{host}/conf/x/app:1.0"),
            repository("with-scheme", f"https://{host}/conf/x/app"),
            repository("with-digest", f"{host}/conf/x/app@sha256:" + "a" * 64),
            repository("upper-case", f"{host}/conf/X/App")]


def _unknown(world: World) -> Sequence[JSON]:
    return [repository("app", _image(world, "plain", "missing"))]


def _suspended(world: World) -> Sequence[JSON]:
    return [repository("app", _image(world, "plain", "suspend"), suspend=True)]


def _basic_auth(world: World) -> Sequence[JSON]:
    image = _image(world, "basic", "basic")
    return [secret("creds", {".dockerconfigjson": world.dockerconfig("basic")}),
            secret("wrong", {".dockerconfigjson": world.dockerconfig("basic", WRONG_CREDS)}),
            secret("opaque", {"username": _b64("u")}, type_="Opaque"),
            repository("with-secret", image, secretRef={"name": "creds"}),
            repository("no-secret", image),
            repository("wrong-creds", image, secretRef={"name": "wrong"}),
            repository("missing-secret", image, secretRef={"name": "nope"}),
            repository("opaque-secret", image, secretRef={"name": "opaque"})]


def _service_account(world: World) -> Sequence[JSON]:
    image = _image(world, "basic", "sa")
    return [secret("creds", {".dockerconfigjson": world.dockerconfig("basic")}),
            service_account("puller", ["creds"]),
            repository("with-sa", image, serviceAccountName="puller"),
            repository("missing-sa", image, serviceAccountName="nobody")]


def _token_auth(world: World) -> Sequence[JSON]:
    image = _image(world, "token", "token")
    return [secret("creds", {".dockerconfigjson": world.dockerconfig("token")}),
            repository("with-secret", image, secretRef={"name": "creds"}),
            repository("anonymous", image)]


def _tls(world: World) -> Sequence[JSON]:
    image = _image(world, "tls", "tls")
    return [secret("ca", {"ca.crt": world.ca_pem_b64()}, type_="Opaque"),
            repository("with-ca", image, certSecretRef={"name": "ca"}),
            repository("without-ca", image),
            repository("missing-cert-secret", image, certSecretRef={"name": "nope"})]


def _mtls(world: World) -> Sequence[JSON]:
    image = _image(world, "mtls", "mtls")
    cert, key = world.client_b64()
    return [secret("client", {"ca.crt": world.ca_pem_b64(), "tls.crt": cert, "tls.key": key},
                   type_="kubernetes.io/tls"),
            secret("ca-only", {"ca.crt": world.ca_pem_b64()}, type_="Opaque"),
            repository("with-client-cert", image, certSecretRef={"name": "client"}),
            repository("without-client-cert", image, certSecretRef={"name": "ca-only"})]


def _push_and_reconcile(world: World) -> Sequence[JSON]:
    return [repository("app", _image(world, "plain", "push")),
            policy("latest", "app", {"semver": {"range": ">=1.0.0"}})]


def _broken(world: World) -> Sequence[JSON]:
    return [repository("app", f"{world.host('flaky')}/{_repo('broken')}")]


def _two_repos(first: str, first_tags: Sequence[str], second: str,
               second_tags: Sequence[str]) -> Callable[[World], Awaitable[None]]:
    async def prepare(world: World) -> None:
        world.registry_of("plain").write_tags(_repo(first), list(first_tags))
        world.registry_of("plain").write_tags(_repo(second), list(second_tags))
    return prepare


def _image_step(name: str) -> Step:
    async def run(space: Space) -> None:
        await space.patch("ImageRepository", "{ns}", "app",
                          {"spec": {"image": _image(space.world, "plain", name)}})
    return Step(f"point the image at {name}", per_peer=run)


async def _flaky_front(world: World) -> None:
    await world.fault_front("flaky", "plain")
    world.registry_of("plain").write_tags(_repo("broken"), ["1.0.0", "1.1.0"])


# --- ImagePolicy ---------------------------------------------------------------------------


def _policies(world: World) -> Sequence[JSON]:
    return [repository("app", _image(world, "plain", "policies")),
            policy("semver-range", "app", {"semver": {"range": ">=1.0.0 <2.0.0"}}),
            policy("semver-any", "app", {"semver": {"range": "*"}}),
            policy("semver-prerelease", "app", {"semver": {"range": ">=1.2.0-0 <1.3.0"}}),
            policy("semver-none", "app", {"semver": {"range": ">=9.0.0"}}),
            policy("semver-invalid", "app", {"semver": {"range": "*-*"}}),
            policy("alphabetical-asc", "app", {"alphabetical": {"order": "asc"}}),
            policy("alphabetical-desc", "app", {"alphabetical": {"order": "desc"}}),
            policy("numerical-mixed", "app", {"numerical": {"order": "asc"}})]


def _numerical(world: World) -> Sequence[JSON]:
    return _numerical_over(world, "numerical")


def _numerical_invalid(world: World) -> Sequence[JSON]:
    return _numerical_over(world, "numerical-invalid")


def _invalid_before_scan(world: World) -> Sequence[JSON]:
    return [repository("app", _image(world, "plain", "later"), suspend=True),
            policy("invalid", "app", {"semver": {"range": "*-*"}})]


def _numerical_over(world: World, name: str) -> Sequence[JSON]:
    return [repository("app", _image(world, "plain", name)),
            policy("asc", "app", {"numerical": {"order": "asc"}}),
            policy("desc", "app", {"numerical": {"order": "desc"}})]


def _filters(world: World) -> Sequence[JSON]:
    return [repository("app", _image(world, "plain", "filters")),
            policy("extract-numerical", "app", {"numerical": {"order": "asc"}},
                   filterTags={"pattern": "^main-[a-f0-9]+-(?P<ts>[0-9]+)", "extract": "$ts"}),
            policy("extract-alphabetical", "app", {"alphabetical": {}},
                   filterTags={"pattern": "^main-(?P<sha>[a-f0-9]+)-", "extract": "$sha"}),
            policy("bad-pattern", "app", {"alphabetical": {}},
                   filterTags={"pattern": "^main-(.*"}),
            policy("nothing-left", "app", {"semver": {"range": ">=1.0.0"}},
                   filterTags={"pattern": "^release-"})]


def _dependencies(world: World) -> Sequence[JSON]:
    return [repository("suspended", _image(world, "plain", "deps"), suspend=True),
            repository("empty", _image(world, "plain", "deps"), exclusionList=[".*"]),
            policy("missing-repo", "nope", {"semver": {"range": ">=1.0.0"}}),
            policy("not-scanned", "suspended", {"semver": {"range": ">=1.0.0"}}),
            policy("no-tags", "empty", {"semver": {"range": ">=1.0.0"}})]


def _cross_namespace(world: World) -> Sequence[JSON]:
    image = _image(world, "plain", "cross")
    return [repository("open", image, ns="{ns2}",
                       accessFrom={"namespaceSelectors": [{"matchLabels": {"team": "a"}}]}),
            repository("closed", image, ns="{ns2}"),
            policy("allowed", "open", {"semver": {"range": ">=1.0.0"}}, repo_ns="{ns2}"),
            policy("no-acl", "closed", {"semver": {"range": ">=1.0.0"}}, repo_ns="{ns2}")]


# --- more ImageRepository situations ----------------------------------------------------


def _credential_shapes(world: World) -> Sequence[JSON]:
    image = _image(world, "basic", "shapes")
    other_host = base64.b64encode(
        b'{"auths": {"registry.example.com": {"username": "u", "password": "p"}}}').decode()
    bad_auth = base64.b64encode(b'{"auths": {"%s": {"auth": "not-base64!"}}}'
                                % world.host("basic").encode()).decode()
    no_colon = base64.b64encode(b'{"auths": {"%s": {"auth": "%s"}}}' % (
        world.host("basic").encode(), base64.b64encode(b"nocolon"))).decode()
    return [secret("other-host", {".dockerconfigjson": other_host}),
            # The API server refuses a dockerconfigjson Secret whose data is not JSON or
            # lacks its key, so those shapes cannot reach either controller.
            secret("bad-auth", {".dockerconfigjson": bad_auth}),
            secret("no-colon", {".dockerconfigjson": no_colon}),
            repository("other-host", image, secretRef={"name": "other-host"}),
            repository("bad-auth", image, secretRef={"name": "bad-auth"}),
            repository("no-colon", image, secretRef={"name": "no-colon"})]


def _cert_shapes(world: World) -> Sequence[JSON]:
    image = _image(world, "tls", "certs")
    cert, _ = world.client_b64()
    return [secret("dockercfg", {".dockerconfigjson": world.dockerconfig("tls")}),
            secret("cert-only", {"tls.crt": cert}, type_="Opaque"),
            secret("bad-ca", {"ca.crt": _b64("not a certificate")}, type_="Opaque"),
            secret("legacy-names", {"caFile": world.ca_pem_b64()}, type_="Opaque"),
            repository("wrong-type", image, certSecretRef={"name": "dockercfg"}),
            repository("cert-only", image, certSecretRef={"name": "cert-only"}),
            repository("bad-ca", image, certSecretRef={"name": "bad-ca"}),
            repository("legacy-names", image, certSecretRef={"name": "legacy-names"}),
            repository("no-key-either", image, certSecretRef={"name": "dockercfg"},
                       secretRef={"name": "dockercfg"})]


def _sa_shapes(world: World) -> Sequence[JSON]:
    image = _image(world, "basic", "sa-shapes")
    return [secret("creds", {".dockerconfigjson": world.dockerconfig("basic")}),
            service_account("dangling", ["nope"]),
            service_account("empty", []),
            service_account("puller", ["creds"]),
            repository("dangling-pull-secret", image, serviceAccountName="dangling"),
            repository("no-pull-secrets", image, serviceAccountName="empty"),
            repository("secret-and-sa", image, secretRef={"name": "creds"},
                       serviceAccountName="puller")]


def _spec_changes(world: World) -> Sequence[JSON]:
    return [repository("app", _image(world, "plain", "changes"))]


def _insecure(world: World) -> Sequence[JSON]:
    return [repository("insecure", _image(world, "plain", "insecure"), insecure=True),
            repository("explicit-empty-exclusions", _image(world, "plain", "insecure"),
                       exclusionList=[]),
            repository("provider-elsewhere", _image(world, "plain", "insecure"),
                       provider="aws")]


def _suspend_scanned(world: World) -> Sequence[JSON]:
    return [repository("app", _image(world, "plain", "suspend-later"))]


def _hanging(world: World) -> Sequence[JSON]:
    return [repository("app", f"{world.host('hang')}/{_repo('hang')}", timeout="2s")]


async def _hang_front(world: World) -> None:
    front = await world.fault_front("hang", "plain")
    front.hang_next(1_000_000, path="/tags/list")
    world.registry_of("plain").write_tags(_repo("hang"), ["1.0.0"])


def _paginated(world: World) -> Sequence[JSON]:
    return [repository("pages", f"{world.host('pages')}/{_repo('pages')}"),
            repository("strict", f"{world.host('strict-pages')}/{_repo('pages')}")]


async def _page_fronts(world: World) -> None:
    await world.paginating_front("pages", "plain")
    await world.paginating_front("strict-pages", "plain", max_page_size=100)
    world.registry_of("plain").write_tags(_repo("pages"), [f"1.{i}.0" for i in range(1200)])


def _proxy(world: World) -> Sequence[JSON]:
    return [secret("proxy", {"address": _b64("http://127.0.0.1:9")}, type_="Opaque"),
            repository("app", _image(world, "plain", "proxy"), proxySecretRef={"name": "proxy"})]


def _repo_deleted(world: World) -> Sequence[JSON]:
    return [repository("app", _image(world, "plain", "deleted")),
            policy("follows", "app", {"semver": {"range": ">=1.0.0"}})]


def _repo_breaks_under_policy(world: World) -> Sequence[JSON]:
    return [repository("app", f"{world.host('flaky-policy')}/{_repo('flaky-policy')}"),
            policy("latest", "app", {"semver": {"range": ">=1.0.0"}})]


async def _flaky_policy_front(world: World) -> None:
    await world.fault_front("flaky-policy", "plain")
    world.registry_of("plain").write_tags(_repo("flaky-policy"), ["1.0.0", "1.1.0"])


# --- more ImagePolicy situations ---------------------------------------------------------


def _semver_corners(world: World) -> Sequence[JSON]:
    return [repository("app", _image(world, "plain", "semver")),
            policy("caret", "app", {"semver": {"range": "^1.2"}}),
            policy("tilde", "app", {"semver": {"range": "~1.2.0"}}),
            policy("wildcard", "app", {"semver": {"range": "1.x"}}),
            policy("or", "app", {"semver": {"range": "<1.0.0 || >=3.0.0"}}),
            policy("hyphen", "app", {"semver": {"range": "1.0.0 - 1.2.5"}}),
            policy("v-prefix", "app", {"semver": {"range": "v1.2.x"}}),
            policy("prerelease", "app", {"semver": {"range": ">=3.0.0-0"}}),
            policy("not-equal", "app", {"semver": {"range": "!=3.0.0"}}),
            policy("empty-range", "app", {"semver": {"range": ""}}),
            policy("bad-range", "app", {"semver": {"range": "1.0.0p"}})]


def _alphabetical_corners(world: World) -> Sequence[JSON]:
    return [repository("app", _image(world, "plain", "alpha")),
            policy("default-order", "app", {"alphabetical": {}}),
            policy("timestamps", "app", {"alphabetical": {"order": "asc"}},
                   filterTags={"pattern": "^20"}),
            policy("desc", "app", {"alphabetical": {"order": "desc"}})]


def _numbers_corners(world: World) -> Sequence[JSON]:
    return [repository("app", _image(world, "plain", "numbers")),
            policy("floats", "app", {"numerical": {"order": "asc"}},
                   filterTags={"pattern": "^[0-9]"}),
            policy("floats-desc", "app", {"numerical": {"order": "desc"}},
                   filterTags={"pattern": "^[0-9]"}),
            policy("build-numbers", "app", {"numerical": {"order": "asc"}},
                   filterTags={"pattern": "^build-(?P<n>[0-9]+)$", "extract": "$n"}),
            policy("numbered-group", "app", {"numerical": {"order": "asc"}},
                   filterTags={"pattern": "^build-([0-9]+)$", "extract": "$1"}),
            policy("unknown-group", "app", {"alphabetical": {}},
                   filterTags={"pattern": "^build-([0-9]+)$", "extract": "$nope"})]


def _policy_changes(world: World) -> Sequence[JSON]:
    return [repository("app", _image(world, "plain", "policy-changes")),
            policy("moving", "app", {"semver": {"range": "1.x"}})]


def _cross_namespace_open(world: World) -> Sequence[JSON]:
    image = _image(world, "plain", "cross-open")
    return [repository("everyone", image, ns="{ns2}",
                       accessFrom={"namespaceSelectors": [{"matchLabels": {}}]}),
            repository("two-selectors", image, ns="{ns2}", accessFrom={"namespaceSelectors": [
                {"matchLabels": {"team": "x"}}, {"matchLabels": {"env": "dev"}}]}),
            repository("both-labels", image, ns="{ns2}", accessFrom={"namespaceSelectors": [
                {"matchLabels": {"team": "a", "env": "prod"}}]}),
            policy("empty-selector", "everyone", {"semver": {"range": ">=1.0.0"}},
                   repo_ns="{ns2}"),
            policy("second-selector", "two-selectors", {"semver": {"range": ">=1.0.0"}},
                   repo_ns="{ns2}"),
            policy("partial-labels", "both-labels", {"semver": {"range": ">=1.0.0"}},
                   repo_ns="{ns2}"),
            policy("same-namespace-ref", "local", {"semver": {"range": ">=1.0.0"}},
                   repo_ns="{ns}"),
            repository("local", image)]


def _digest_policy(world: World) -> Sequence[JSON]:
    return [repository("app", _image(world, "plain", "digests")),
            policy("if-not-present", "app", {"semver": {"range": ">=1.0.0"}},
                   digestReflectionPolicy="IfNotPresent"),
            policy("never", "app", {"semver": {"range": ">=1.0.0"}},
                   digestReflectionPolicy="Never")]


def _token_flavours(world: World) -> Sequence[JSON]:
    image = _image(world, "token", "flavours")
    host = world.host("token")
    assert world.token_server is not None
    refresh = world.token_server.issue_refresh_token(TEST_CREDS[0])
    identity = base64.b64encode(
        b'{"auths": {"%s": {"identitytoken": "%s"}}}' % (host.encode(), refresh.encode()))
    auth_only = base64.b64encode(b'{"auths": {"%s": {"auth": "%s"}}}' % (
        host.encode(), base64.b64encode(":".join(TEST_CREDS).encode())))
    return [secret("identity", {".dockerconfigjson": identity.decode()}),
            secret("auth-field", {".dockerconfigjson": auth_only.decode()}),
            repository("identity-token", image, secretRef={"name": "identity"}),
            repository("auth-field", image, secretRef={"name": "auth-field"})]


def _quiet_reconcile(world: World) -> Sequence[JSON]:
    return [repository("app", _image(world, "plain", "quiet")),
            policy("latest", "app", {"semver": {"range": ">=1.0.0"}})]


def _many_policies(world: World) -> Sequence[JSON]:
    return [repository("app", _image(world, "plain", "many")),
            policy("semver", "app", {"semver": {"range": ">=1.0.0"}}),
            policy("stable-only", "app", {"semver": {"range": "<2.0.0"}}),
            policy("alphabetical", "app", {"alphabetical": {}}),
            policy("v-extract", "app", {"semver": {"range": ">=1.0.0"}},
                   filterTags={"pattern": "^v(?P<v>.*)$", "extract": "$v"})]


def _same_image_two_repos(world: World) -> Sequence[JSON]:
    image = _image(world, "plain", "shared")
    return [repository("all", image),
            repository("no-rc", image, exclusionList=["-rc"]),
            policy("from-all", "all", {"semver": {"range": ">=1.0.0-0"}}),
            policy("from-no-rc", "no-rc", {"semver": {"range": ">=1.0.0-0"}})]


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("repo-scan", "a plain registry is scanned",
             ("Ready Succeeded", "successful scan: found N tags", "latestTags",
              "canonicalImageName", "observedExclusionList"),
             _basic_scan, prepare=_seeded("plain", "scan", SEMVER_TAGS)),
    Scenario("repo-exclusions", "exclusion lists: default, custom, invalid",
             ("^.*\\.sig$ default", "exclusionList", "failed to compile regex",
              "ReadOperationFailed"),
             _exclusions,
             prepare=_seeded("plain", "exclude", ["1.0.0", "1.0.0.sig", "v1.1.0", "2.0.0-rc1"])),
    Scenario("repo-invalid-image", "spec.image that is not a repository",
             ("ImageURLInvalid", "Stalled", "should not contain a tag",
              "should not start with URL scheme", "could not parse reference"),
             _invalid_images),
    Scenario("repo-unknown", "a repository the registry does not have",
             ("ReadOperationFailed", "NAME_UNKNOWN"), _unknown),
    Scenario("repo-suspended", "created suspended, then resumed",
             ("spec.suspend", "no status while suspended", "resume scans"),
             _suspended, prepare=_seeded("plain", "suspend", ["1.0.0"]),
             steps=(patch_step("resume", "ImageRepository", "app",
                               {"spec": {"suspend": False}}),)),
    Scenario("repo-basic-auth", "htpasswd registry: secrets right, wrong, missing, mistyped",
             ("secretRef", "AuthenticationFailed", "secrets \"nope\" not found",
              "unknown secret type", "UNAUTHORIZED"),
             _basic_auth, prepare=_seeded("basic", "basic", ["1.0.0", "1.1.0"]),
             steps=(delete_step("Secret", "creds"),
                    request_reconcile("ImageRepository", "with-secret"))),
    Scenario("repo-service-account", "pull secrets from a ServiceAccount",
             ("serviceAccountName", "serviceaccounts \"nobody\" not found"),
             _service_account, prepare=_seeded("basic", "sa", ["1.0.0"])),
    Scenario("repo-token-auth", "Bearer token registry",
             ("token realm", "anonymous refused"), _token_auth,
             prepare=_seeded("token", "token", ["1.0.0", "2.0.0"])),
    Scenario("repo-tls", "https registry with a private CA",
             ("certSecretRef ca.crt", "x509 unknown authority", "missing cert secret"),
             _tls, prepare=_seeded("tls", "tls", ["1.0.0"])),
    Scenario("repo-mtls", "mutual TLS registry",
             ("certSecretRef tls.crt/tls.key", "client certificate required"),
             _mtls, prepare=_seeded("mtls", "mtls", ["1.0.0"])),
    Scenario("repo-push-reconcile", "new tags appear after a requested reconcile",
             ("reconcile.fluxcd.io/requestedAt", "lastHandledReconcileAt", "tag count changes",
              "policy moves", "updated from X to Y"),
             _push_and_reconcile, prepare=_seeded("plain", "push", ["1.0.0", "1.1.0"]),
             steps=(both("push 1.2.0 and request a reconcile",
                         push("plain", _repo("push"), ["1.2.0"]),
                         request_reconcile("ImageRepository", "app")),)),
    Scenario("repo-broken-registry", "the registry fails, then recovers",
             ("ReadOperationFailed 503", "recovery"), _broken, prepare=_flaky_front,
             steps=(both("break the registry and request a reconcile", break_front("flaky"),
                         request_reconcile("ImageRepository", "app")),
                    both("heal the registry and request a reconcile", heal_front("flaky"),
                         request_reconcile("ImageRepository", "app", token="request-2")))),
    Scenario("pol-policies", "semver, alphabetical and numerical choices over mixed tags",
             ("semver range", "prerelease ranges", "InvalidPolicy", "improper constraint",
              "unable to determine latest version", "alphabetical asc/desc",
              "failed to parse invalid numeric value"),
             _policies, prepare=_seeded("plain", "policies", SEMVER_TAGS)),
    Scenario("pol-numerical", "numerical order over numbers",
             ("numerical asc", "numerical desc"), _numerical,
             prepare=_seeded("plain", "numerical", ["1", "10", "2", "0.5", "1.5e1"])),
    Scenario("repo-invalid-tags", "a registry lists names that are not valid tags",
             ("tag grammar", "A14"), _numerical_invalid,
             prepare=_seeded("plain", "numerical-invalid", ["1", "10", "-3", "_x", ".5"])),
    Scenario("pol-invalid-before-scan", "an invalid policy whose repository is scanned later",
             ("Ready keeps an earlier DependencyNotReady when the policy stalls",
              "InvalidPolicy"),
             _invalid_before_scan, prepare=_seeded("plain", "later", ["1.0.0"]),
             steps=(patch_step("resume the repository", "ImageRepository", "app",
                               {"spec": {"suspend": False}}),)),
    Scenario("pol-filters", "filterTags with extract",
             ("filterTags.pattern", "extract $name", "invalid regular expression pattern",
              "nothing left after filtering"),
             _filters, prepare=_seeded("plain", "filters", [
                 "main-abc123-100", "main-def456-300", "main-0a0a0a-200", "pr-9-999", "1.0.0"])),
    Scenario("pol-dependencies", "repositories missing, not scanned, without tags",
             ("DependencyNotReady", "referenced ImageRepository does not exist",
              "has not been scanned yet", "no tags in database"),
             _dependencies, prepare=_seeded("plain", "deps", ["1.0.0"])),
    Scenario("pol-cross-namespace", "accessFrom selectors and namespace labels",
             ("AccessDenied", "missing ACL labels", "ACL labels mismatch", "accessFrom"),
             _cross_namespace, namespaces={"ns": {"team": "a"}, "ns2": {}},
             prepare=_seeded("plain", "cross", ["1.0.0", "1.1.0"]),
             steps=(label_namespace("ns", {"team": "b"}),)),

    Scenario("repo-credential-shapes", "docker config Secrets that cannot be used",
             ("auth for \"<host>\" not found in secret", "malformed auth field"),
             _credential_shapes,
             prepare=_seeded("basic", "shapes", ["1.0.0"])),
    Scenario("repo-cert-shapes", "certSecretRef Secrets that cannot be used",
             ("invalid secret type", "both certificate and private key",
              "invalid CA certificate", "deprecated caFile"), _cert_shapes,
             prepare=_seeded("tls", "certs", ["1.0.0"])),
    Scenario("repo-sa-shapes", "ServiceAccounts with missing or no pull secrets, and A5",
             ("pull secret not found", "no pull secrets", "secretRef with serviceAccountName"),
             _sa_shapes, prepare=_seeded("basic", "sa-shapes", ["1.0.0"])),
    Scenario("repo-spec-changes", "exclusion list and image changes rescan",
             ("updated exclusion list", "new image name", "observedExclusionList",
              "canonicalImageName"),
             _spec_changes, prepare=_two_repos("changes", ["1.0.0", "1.1.0-rc.1"],
                                               "changes-b", ["2.0.0"]),
             steps=(patch_step("exclude -rc", "ImageRepository", "app",
                               {"spec": {"exclusionList": ["-rc"]}}),
                    _image_step("changes-b"))),
    Scenario("repo-insecure", "insecure, an explicit empty exclusion list, a provider "
             "for another host",
             ("spec.insecure", "exclusionList: []", "provider ignored for a generic host"),
             _insecure, prepare=_seeded("plain", "insecure", ["1.0.0", "1.0.0.sig"])),
    Scenario("repo-suspend-scanned", "suspending a scanned repository stops scans",
             ("suspend after a scan", "requested reconcile of a suspended object"),
             _suspend_scanned, prepare=_seeded("plain", "suspend-later", ["1.0.0"]),
             steps=(patch_step("suspend", "ImageRepository", "app",
                               {"spec": {"suspend": True}}),
                    both("push 2.0.0 and request a reconcile",
                         push("plain", _repo("suspend-later"), ["2.0.0"]),
                         request_reconcile("ImageRepository", "app")),
                    patch_step("resume", "ImageRepository", "app",
                               {"spec": {"suspend": False}}))),
    Scenario("repo-timeout", "a registry that never answers the tags request",
             ("spec.timeout", "timed out"), _hanging, prepare=_hang_front),
    Scenario("repo-pagination", "Link pagination, and a registry refusing n=1000",
             ("Link rel=next", "PAGINATION_NUMBER_INVALID"), _paginated,
             prepare=_page_fronts),
    Scenario("repo-proxy", "proxySecretRef pointing at a proxy that is not there",
             ("proxySecretRef",), _proxy, prepare=_seeded("plain", "proxy", ["1.0.0"])),
    Scenario("pol-repo-deleted", "the repository of a policy is deleted",
             ("referenced ImageRepository does not exist", "DependencyNotReady"),
             _repo_deleted, prepare=_seeded("plain", "deleted", ["1.0.0"]),
             steps=(delete_step("ImageRepository", "app"),)),
    Scenario("pol-repo-breaks", "the registry of a policy's repository breaks",
             ("policy keeps its choice while the repository fails",), _repo_breaks_under_policy,
             prepare=_flaky_policy_front,
             steps=(both("break the registry and request a reconcile",
                         break_front("flaky-policy"),
                         request_reconcile("ImageRepository", "app")),)),
    Scenario("pol-semver-corners", "Masterminds ranges: caret, tilde, x, ||, hyphen, v",
             ("^", "~", "x", "||", "hyphen range", "v prefix", "prerelease range", "!=",
              "empty range", "improper constraint"),
             _semver_corners, prepare=_seeded("plain", "semver", [
                 "1.0.0", "1.2.0", "1.2.5", "1.3.0", "v1.2.9", "2.0.0", "3.0.0",
                 "3.1.0-alpha.1", "0.9.0", "01.2.0"])),
    Scenario("pol-alphabetical-corners", "alphabetical order over names and timestamps",
             ("alphabetical default order", "timestamps", "desc"), _alphabetical_corners,
             prepare=_seeded("plain", "alpha", [
                 "zesty", "artful", "bionic", "2023-05-08T00-20-00Z", "2023-05-09T10-00-00Z",
                 "2022-12-31T23-59-59Z"])),
    Scenario("pol-numerical-corners", "numbers: floats, exponents, extracted build numbers",
             ("floats", "exponent", "hex float", "$n", "$1", "unknown group"),
             _numbers_corners, prepare=_seeded("plain", "numbers", [
                 "1.5", "10", "2e1", "0x1p4", "3", "build-7", "build-12", "build-100"])),
    Scenario("pol-policy-changes", "changing the policy's range moves its choice",
             ("spec change of a policy", "updated from X to Y"), _policy_changes,
             prepare=_seeded("plain", "policy-changes", ["1.0.0", "1.5.0", "2.0.0"]),
             steps=(patch_step("range 2.x", "ImagePolicy", "moving",
                               {"spec": {"policy": {"semver": {"range": "2.x"}}}}),)),
    Scenario("pol-cross-namespace-open", "empty selectors, several selectors, partial labels",
             ("accessFrom empty matchLabels", "several selectors", "all labels of a selector",
              "explicit same-namespace reference"),
             _cross_namespace_open, namespaces={"ns": {"team": "a", "env": "dev"}, "ns2": {}},
             prepare=_seeded("plain", "cross-open", ["1.0.0"])),
    Scenario("pol-digest-reflection", "digestReflectionPolicy IfNotPresent and Never",
             ("digestReflectionPolicy", "latestRef.digest"), _digest_policy,
             prepare=_seeded("plain", "digests", ["1.0.0", "1.1.0"])),
    Scenario("repo-token-flavours", "Bearer auth with an identity token and an auth field",
             ("identitytoken refresh flow", "auth field"), _token_flavours,
             prepare=_seeded("token", "flavours", ["1.0.0"])),
    Scenario("repo-quiet-reconcile", "a requested reconcile that finds nothing new",
             ("no new tags found", "lastHandledReconcileAt", "quiet events"),
             _quiet_reconcile, prepare=_seeded("plain", "quiet", ["1.0.0", "1.1.0"]),
             steps=(request_reconcile("ImageRepository", "app"),)),
    Scenario("pol-many-policies", "several policies follow one repository through a push",
             ("each policy moves on its own", "v prefix extracted"), _many_policies,
             prepare=_seeded("plain", "many", ["1.0.0", "v1.1.0", "1.2.0"]),
             steps=(both("push 2.0.0 and v2.1.0 and request a reconcile",
                         push("plain", _repo("many"), ["2.0.0", "v2.1.0"]),
                         request_reconcile("ImageRepository", "app")),)),
    Scenario("repo-same-image", "two repositories of one image with different exclusions",
             ("tags kept per object",), _same_image_two_repos,
             prepare=_seeded("plain", "shared", ["1.0.0", "1.1.0-rc.1", "1.1.0-rc.2"])),
)
