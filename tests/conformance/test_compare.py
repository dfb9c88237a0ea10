"""The conformance machinery itself: normalisation, comparison, deliberate rules.

These run without any controller: they feed hand-written observations through the same
functions ``make conformance`` and ``test_recorded_flux`` use, so a rule that explains too
much, or a normalisation that hides a real difference, fails here.
"""

from __future__ import annotations

from typing import Any

from conformance import compare, deliberate, normalize

JSON = dict[str, Any]
NAMES = normalize.Names(namespaces={"sc-ns-o": "{ns}", "sc-ns-f031": "{ns}"},
                        hosts={"127.0.0.1:40001": "plain"})


def _obs(ready: tuple[str, str, str], *, events: list[JSON] | None = None,
         extra: JSON | None = None) -> JSON:
    status, reason, message = ready
    return {"status": {"conditions": [{"type": "Ready", "status": status, "reason": reason,
                                       "message": message, "observedGeneration": 1}],
                       **(extra or {})},
            "events": events or [], "get": {"STATUS": message}}


def _checkpoints(obs: JSON, label: str = "created") -> list[JSON]:
    return [{"label": label, "settled": True, "objects": {"ImageRepository/{ns}/app": obs}}]


def test_names_ports_digests_times_and_whitespace_are_normalised() -> None:
    raw = {"canonicalImageName": "127.0.0.1:40001/app",
           "conditions": [{"type": "Ready", "lastTransitionTime": "2026-01-01T00:00:00Z",
                           "message": "in sc-ns-o: sha256:" + "a" * 64 + "  next scan in 5m3s\n"}],
           "lastScanResult": {"scanTime": "2026-01-01T00:00:00Z", "tagCount": 3}}
    status = normalize.status(raw, NAMES)
    assert status["canonicalImageName"] == "<plain>/app"
    condition = status["conditions"][0]
    assert condition["lastTransitionTime"] == "<time>"
    assert condition["message"] == "in {ns}: sha256:<digest> next scan in <duration>"
    assert status["lastScanResult"] == {"scanTime": "<time>", "tagCount": 3}


def test_warning_counts_are_dropped_normal_counts_kept() -> None:
    warning = normalize.event({"type": "Warning", "reason": "R", "message": "m", "count": 7},
                              NAMES)
    normal = normalize.event({"type": "Normal", "reason": "R", "message": "m", "count": 2},
                             NAMES)
    assert warning["count"] == "recorded"
    assert normal["count"] == 2


def test_kubectl_tables_are_cut_before_names_are_rewritten() -> None:
    text = ("NAME                                                 LAST SCAN   TAGS   READY\n"
            "imagerepository.image.toolkit.fluxcd.io/app          2026-01-0   3      True\n"
            "\n"
            "NAME                                         LATESTIMAGE\n"
            "imagepolicy.image.toolkit.fluxcd.io/p        127.0.0.1:40001/app:1.0.0\n")
    rows = normalize.table(text, NAMES)
    assert rows["imagerepository.image.toolkit.fluxcd.io/app"]["LAST SCAN"] == "<time>"
    assert rows["imagerepository.image.toolkit.fluxcd.io/app"]["TAGS"] == "3"
    assert rows["imagepolicy.image.toolkit.fluxcd.io/p"]["LATESTIMAGE"] == "<plain>/app:1.0.0"


def test_a_real_difference_is_unexplained() -> None:
    ours = _checkpoints(_obs(("True", "Succeeded", "successful scan: found 3 tags")))
    theirs = _checkpoints(_obs(("True", "Succeeded", "successful scan: found 4 tags")))
    verdict = compare.judge("s", compare.differences("s", ours, theirs), deliberate.explain)
    assert verdict.word == "differs"
    assert {d.path for d in verdict.unexplained} == {
        "status.conditions[Ready].message", "get.STATUS"}


def test_transport_wording_is_explained_only_with_the_same_reason() -> None:
    go = 'scan failed: Get "https://<tls>/v2/": tls: failed to verify certificate: x509: x'
    py = "scan failed: GET https://<tls>/v2/: untrusted certificate: [SSL] x"
    event = [{"type": "Warning", "reason": "ReadOperationFailed", "count": "recorded"}]
    ours = _checkpoints(_obs(("False", "ReadOperationFailed", py),
                             events=[{**event[0], "message": py}]))
    theirs = _checkpoints(_obs(("False", "ReadOperationFailed", go),
                               events=[{**event[0], "message": go}]))
    verdict = compare.judge("s", compare.differences("s", ours, theirs), deliberate.explain)
    assert verdict.word == "deliberate"
    assert {d.rule for d in verdict.explained} == {"D1"}
    other_reason = _checkpoints(_obs(("False", "AuthenticationFailed", go)))
    verdict = compare.judge("s", compare.differences("s", ours, other_reason),
                            deliberate.explain)
    assert verdict.unexplained


def test_fields_flux_lacks_are_explained_only_when_flux_lacks_them() -> None:
    ours = _checkpoints(_obs(("True", "Succeeded", "m"),
                             extra={"lastScanResult": {"revision": "sha256:<digest>"}}))
    theirs = _checkpoints(_obs(("True", "Succeeded", "m"), extra={"lastScanResult": {}}))
    verdict = compare.judge("s", compare.differences("s", ours, theirs), deliberate.explain)
    assert [d.rule for d in verdict.explained] == ["A2"]
    flux_has_one = _checkpoints(_obs(("True", "Succeeded", "m"), extra={
        "lastScanResult": {"revision": "sha256:other"}}))
    verdict = compare.judge("s", compare.differences("s", ours, flux_has_one),
                            deliberate.explain)
    assert verdict.unexplained


def test_fewer_normal_events_are_quiet_events_more_are_not() -> None:
    def with_count(count: int) -> list[JSON]:
        return _checkpoints(_obs(("True", "Succeeded", "m"), events=[
            {"type": "Normal", "reason": "Succeeded", "message": "m", "count": count}]))
    verdict = compare.judge("s", compare.differences("s", with_count(1), with_count(3)),
                            deliberate.explain)
    assert [d.rule for d in verdict.explained] == ["A6"]
    verdict = compare.judge("s", compare.differences("s", with_count(3), with_count(1)),
                            deliberate.explain)
    assert verdict.unexplained
