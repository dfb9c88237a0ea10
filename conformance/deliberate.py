"""Differences from Flux this project chose, each with its reason.

A rule explains a ``compare.Difference`` when its matcher accepts it. Rules are named
after the contract's section A where one applies (``A2``...), else ``D<n>``. Two shapes:

* a rule on paths (a field Flux v0.31 does not have, an event it records more often);
* a rule on the Ready message: when it accepts the pair (ours, Flux's), it also explains
  the differences that only repeat that pair (the ``kubectl get`` STATUS cell and the
  Events carrying either message).

Every rule carries the reason a reader of ``docs/conformance.md`` needs; an unexplained
difference is either a bug to fix or a rule to add here, deliberately.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from conformance.compare import Difference

# What Go's net/http, crypto/tls and go-containerregistry put into a transport error.
_GO_TRANSPORT: Final = re.compile(
    r'Get "https?://|tls: |x509: |dial tcp|http: server gave HTTP response'
    r"|remote error: |connection refused")


V031: Final = frozenset({"flux-v0.31"})
V12: Final = frozenset({"flux-v1.2"})
BOTH: Final = V031 | V12


@dataclass(frozen=True, slots=True)
class Rule:
    """One deliberate difference: id, one-line title, the reason, its matcher, and the
    Flux releases it holds against."""

    id: str
    title: str
    reason: str
    matches: Callable[[Difference], bool]
    peers: frozenset[str] = V031


def _ready_messages(accept: Callable[[str, str], bool]) -> Callable[[Difference], bool]:
    """A matcher for differences that repeat a message pair ``accept`` allows."""
    def matches(diff: Difference) -> bool:
        if diff.path in ("status.conditions[Ready].message", "get.STATUS") and (
                diff.context.ready("ours", "reason") != diff.context.ready("theirs", "reason")):
            return False  # a different reason is a different outcome, not a wording
        return any(accept(ours, theirs) for ours, theirs in diff.message_pairs())
    return matches


def _both_scan_failed(ours: str, theirs: str) -> bool:
    return ours.startswith("scan failed: ") and theirs.startswith("scan failed: ")


def _transport_wording(ours: str, theirs: str) -> bool:
    return _both_scan_failed(ours, theirs) and bool(_GO_TRANSPORT.search(theirs))


def _realm_query(ours: str, theirs: str) -> bool:
    # Flux passes the realm error through a format string: "%3A" turns into "%!A(MISSING)".
    return _both_scan_failed(ours, theirs) and "%!" in theirs


def _flux_trace_event(diff: Difference) -> bool:
    if not diff.path.startswith("events[Normal "):
        return False
    if diff.ours is None:
        return diff.theirs is not None and any(
            marker in diff.path for marker in (
                "no new tags found, next scan in", "no change in repository configuration",
                "successful scan, next scan in", "tags did not change, next scan in",
                "resolved to", "updated from"))
    return isinstance(diff.ours, int) and isinstance(diff.theirs, int) \
        and diff.theirs > diff.ours


def _no_revision_in_v031(diff: Difference) -> bool:
    return diff.path == "status.lastScanResult.revision" and diff.theirs is None


def _no_latest_ref_in_v031(diff: Difference) -> bool:
    if diff.path.startswith(("status.latestRef.", "status.observedPreviousRef.")):
        return diff.theirs is None
    # kubectl shows v1's columns, which read latestRef.
    return diff.path in ("get.IMAGE", "get.TAG") and diff.theirs == ""


def _latest_image_kept(diff: Difference) -> bool:
    return diff.path in ("status.latestImage", "status.observedPreviousImage") \
        and diff.theirs is None


def _one_secret_for_both(diff: Difference) -> bool:
    message = diff.context.ready("theirs")
    return isinstance(message, str) and "failed to get secret '/'" in message


def _failed_scan_stays_failed(diff: Difference) -> bool:
    ctx = diff.context
    return (ctx.ready("ours", "reason") == "ReadOperationFailed"
            and ctx.ready("theirs", "reason") == "Succeeded"
            and ctx.ours.get("status.conditions[Reconciling].message")
            == "scanning: previous scan failed")


def _namespace_labels_watched(diff: Difference) -> bool:
    ctx = diff.context
    message = ctx.ready("ours")
    return (diff.label.startswith("label namespace")
            and ctx.ready("ours", "reason") == "AccessDenied"
            and ctx.ready("theirs", "reason") == "Succeeded"
            and isinstance(message, str) and "ACL labels mismatch" in message)


def _secret_and_service_account(diff: Difference) -> bool:
    message = diff.context.ready("theirs")
    return isinstance(message, str) and "not both" in message \
        and diff.context.ready("ours", "status") == "True"


def _invalid_tags_skipped(diff: Difference) -> bool:
    return diff.scenario == "repo-invalid-tags"


def _progressing_between_retries(diff: Difference) -> bool:
    ctx = diff.context
    return (diff.path == "status.conditions[Reconciling].reason"
            and diff.ours == "ProgressingWithRetry" and diff.theirs == "Progressing"
            and ctx.ready("ours", "status") == ctx.ready("theirs", "status") == "False"
            and ctx.ready("ours", "reason") == ctx.ready("theirs", "reason"))


def _page_size_fallback(diff: Difference) -> bool:
    message = diff.context.ready("theirs")
    return (isinstance(message, str) and "PAGINATION_NUMBER_INVALID" in message
            and diff.context.ready("ours", "status") == "True")


def _proxy_served(diff: Difference) -> bool:
    return diff.scenario == "repo-proxy"


def _tags_per_object(diff: Difference) -> bool:
    if diff.scenario == "repo-same-image":
        return True
    # Deleting a repository drops its tags at once, so its policy may see no tags before
    # it sees the repository gone.
    return (diff.label.startswith("delete ImageRepository")
            and diff.path.startswith("events[Warning DependencyNotReady: ")
            and diff.path.endswith("no tags in database]"))


RULES: tuple[Rule, ...] = (
    Rule("A2", "lastScanResult.revision is served",
         "Flux added the checksum of the tag list in v1.0; policies here re-evaluate when it "
         "changes, so it is always set. v0.31 has no such field.", _no_revision_in_v031),
    Rule("A12", "ImagePolicy status.latestRef and observedPreviousRef are served",
         "Digest reflection (Flux v0.35+) and the v1 status are served in every API version: "
         "latestRef {name, tag, digest} and observedPreviousRef beside latestImage (kubectl's "
         "v1 columns show them). v0.31 has only latestImage.", _no_latest_ref_in_v031),
    Rule("D4", "ImagePolicy status.latestImage is kept",
         "Flux v1 dropped latestImage and observedPreviousImage; Flux 2.2's "
         "image-automation-controller reads latestImage, so both fields stay beside latestRef "
         "in every mode (docs/operations.md).", _latest_image_kept, peers=V12),
    Rule("D5", "secretRef and certSecretRef may name one Secret",
         "Flux v1.2.4 fails such a repository ('failed to get secret '/': resource name may "
         "not be empty', a bug: the Secret it already read is not used); here the one Secret "
         "gives both, as in v0.31.", _one_secret_for_both, peers=V12),
    Rule("A6", "quiet events",
         "v0.31 records a Normal event on every reconcile, even when nothing changed (its "
         "'Trace' events: 'no new tags found, next scan in ...', the same 'resolved to' "
         "again). Here a Normal event marks a change only, so counts are lower and the "
         "no-change messages are logged, not recorded.", _flux_trace_event, peers=BOTH),
    Rule("A3", "a failed scan is retried as a scan",
         "After a requested scan fails, v0.31 records the request as handled and its retry "
         "ends Ready=True without scanning (the registry is still broken). Here Ready stays "
         "False until a scan succeeds ('scanning: previous scan failed').",
         _failed_scan_stays_failed, peers=BOTH),
    Rule("A2-ns", "namespace labels are watched",
         "Whether a policy may use a repository in another namespace depends on that "
         "namespace's labels; here a label change re-evaluates the policy at once, v0.31 "
         "notices only at the next unrelated reconcile.", _namespace_labels_watched, peers=BOTH),
    Rule("A14", "tags outside the distribution grammar are skipped",
         "A tag such as '-3' cannot be pushed to a conforming registry; one that lists it "
         "anyway is not trusted with it (docs/security.md). v0.31 keeps it.",
         _invalid_tags_skipped, peers=BOTH),
    Rule("A1", "tags are stored per ImageRepository",
         "v0.31 keys its tag database by image name, so two repositories of one image "
         "overwrite each other's tags (a policy of the one sees the other's exclusions). Here "
         "each object has its own tags, and a deleted repository's tags go with it.",
         _tags_per_object, peers=BOTH),
    Rule("A5", "secretRef together with serviceAccountName works",
         "v0.31 fails every scan of such a repository ('provide an option for either "
         "authn.Authenticator or authn.Keychain, not both'); here the Secret is used first, "
         "then the ServiceAccount's pull secrets.", _secret_and_service_account),
    Rule("A8", "a refused page size falls back to n=100",
         "A registry that refuses n=1000 (PAGINATION_NUMBER_INVALID, Quay's "
         "TOO_MANY_TAGS_REQUESTED) fails every v0.31 scan; here the scan asks again with "
         "n=100 and remembers that for the host.", _page_size_fallback, peers=BOTH),
    Rule("A10", "spec.proxySecretRef is served",
         "v0.31 does not know the field and connects directly; here the repository's "
         "traffic goes through the proxy the Secret names (Flux v0.33+), so an unreachable "
         "proxy fails the scan.", _proxy_served),
    Rule("D3", "between retries Reconciling says ProgressingWithRetry",
         "When a retry of v0.31 fails exactly as the attempt before, its final patch is a "
         "no-op against the reconcile's start and the mid-reconcile 'Progressing' stays "
         "visible until the next retry. Here the object waiting for its retry always shows "
         "ProgressingWithRetry, which kstatus readers take as 'retrying'.",
         _progressing_between_retries, peers=BOTH),
    Rule("D1", "transport errors in Python's words",
         "A connection, TLS or timeout failure is reported by Python's ssl and aiohttp, not "
         "by Go's net/http ('tls: failed to verify certificate: x509: ...', 'context deadline "
         "exceeded'); the reason "
         "(ReadOperationFailed), the 'scan failed: ' prefix and the request are the same. "
         "v0.31 reports both of its attempts (https and plain http) joined; here the one that "
         "explains most is reported.",
         _ready_messages(_transport_wording), peers=BOTH),
    Rule("D2", "token realm shown without its query",
         "v0.31 passes the token error through a format string, which garbles the realm's "
         "query ('scope=repository%!A(MISSING)...'); the realm's query is the registry's "
         "choice and is not shown here (docs/security.md).", _ready_messages(_realm_query)),
)


def explainer(peer: str) -> Callable[[Difference], str]:
    """``explain`` for differences against ``peer``: only that release's rules count."""
    rules = [rule for rule in RULES if peer in rule.peers]

    def explain(diff: Difference) -> str:
        return next((rule.id for rule in rules if rule.matches(diff)), "")
    return explain


def explain(diff: Difference) -> str:
    """The id of the first rule against Flux v0.31 that explains ``diff``, or ``""``."""
    return explainer("flux-v0.31")(diff)
