"""Settings: one frozen object holding every flag of the controller and its default.

Flag names and defaults are Flux's (contract §4.1) so a Flux Deployment's ``args`` work
unchanged; the flags this project adds (``--registry-qps`` and friends) are named in the
same style. Parsing command lines lives in ``cli``; this module only holds the values and
the small parsers for Go-style flag values.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Final

from imagereflector.api.compat import Compatibility
from imagereflector.api.duration import SECOND, parse_duration

# Flux's gates, all off by default. ObjectLevelWorkloadIdentity acts (provider login with
# the object's own ServiceAccount); CacheSecretsAndConfigMaps and FluxStorage are accepted
# so Flux's Deployments start unchanged: Secrets are never cached here, and the tag store is
# always per object (SQLite), which is what FluxStorage switches Flux to.
KNOWN_FEATURE_GATES: Final = {"CacheSecretsAndConfigMaps": False,
                              "ObjectLevelWorkloadIdentity": False, "FluxStorage": False}
OBJECT_LEVEL_WORKLOAD_IDENTITY: Final = "ObjectLevelWorkloadIdentity"
LEADER_ELECTION_ID: Final = "image-reflector-controller-leader-election"


def parse_bool(text: str) -> bool:
    """Parse a boolean flag value the way Go's ``strconv.ParseBool`` does."""
    lowered = text.strip()
    if lowered in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if lowered in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise ValueError(f"invalid boolean value {text!r}")


def parse_feature_gates(text: str) -> dict[str, bool]:
    """Parse ``--feature-gates=Key=true,Other=false``; unknown gates are an error."""
    gates = dict(KNOWN_FEATURE_GATES)
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"missing bool value for feature gate {key!r}")
        if key not in KNOWN_FEATURE_GATES:
            raise ValueError(f"unrecognized feature gate: {key}")
        gates[key] = parse_bool(value)
    return gates


def duration_seconds(text: str) -> float:
    """Parse a Go duration flag value (``750ms``, ``15m``) into seconds."""
    return parse_duration(text) / SECOND


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of ``imagereflector controller``; defaults are Flux's."""

    metrics_addr: str = ":8080"
    events_addr: str = ""
    health_addr: str = ":9440"
    storage_path: str = "/data"
    # Accepted for Flux compatibility; SQLite has no value log to size.
    storage_value_log_file_size: int = 1 << 28
    concurrent: int = 4
    aws_autologin_for_ecr: bool = False
    gcp_autologin_for_gcr: bool = False
    azure_autologin_for_acr: bool = False
    kube_api_qps: float = 50.0
    kube_api_burst: int = 300
    kubeconfig: str = ""
    log_level: str = "info"
    log_encoding: str = "json"
    enable_leader_election: bool = False
    leader_election_release_on_cancel: bool = True
    leader_election_lease_duration: float = 35.0
    leader_election_renew_deadline: float = 30.0
    leader_election_retry_period: float = 5.0
    no_cross_namespace_refs: bool = False
    min_retry_delay: float = 0.75
    max_retry_delay: float = 900.0
    feature_gates: dict[str, bool] = field(default_factory=lambda: dict(KNOWN_FEATURE_GATES))
    watch_all_namespaces: bool = True
    watch_label_selector: str = ""
    runtime_namespace: str = ""
    # Registry politeness (contract A7, A8): per-host token bucket and page cap.
    registry_qps: float = 10.0
    registry_burst: int = 20
    max_tag_pages: int = 100
    # Whole-scan bounds on what a registry can make one scan hold (docs/security.md).
    max_tags_per_scan: int = 100_000
    max_tag_bytes_per_scan: int = 8 * 1024 * 1024
    registry_max_retry_after: float = 60.0
    # How often the store file is checked for deletion or corruption (not a flag).
    store_check_interval: float = 30.0
    # Flux v1.2's flags, served in every mode (docs/operations.md).
    flux_compatibility: Compatibility = Compatibility.V0_31
    requeue_dependency: float = 30.0
    default_service_account: str = ""
    token_cache_max_size: int = 100
    token_cache_max_duration: float = 3600.0
    # Accepted so Flux v1.2's Deployments start unchanged; SQLite needs neither.
    gc_interval_minutes: int = 10
    storage_compression_threshold: int = 64

    def validate(self) -> None:
        """Raise ``ValueError`` for a combination Flux refuses at startup (its words)."""
        if self.default_service_account and not self.object_level_workload_identity:
            raise ValueError("cannot set default service accounts when the feature gate "
                             "ObjectLevelWorkloadIdentity is not enabled")

    @property
    def object_level_workload_identity(self) -> bool:
        """Whether objects may log in to a cloud with their own ServiceAccount."""
        return self.feature_gates.get(OBJECT_LEVEL_WORKLOAD_IDENTITY, False)

    def leader_election_id(self) -> str:
        """Flux's lease name, suffixed with a hash of the label selector when sharding."""
        if not self.watch_label_selector:
            return LEADER_ELECTION_ID
        digest = hashlib.sha256(self.watch_label_selector.encode()).hexdigest()[:8]
        return f"{LEADER_ELECTION_ID}-{digest}"

    def watch_namespace(self) -> str | None:
        """The single namespace to watch, or None for all namespaces."""
        return None if self.watch_all_namespaces else self.runtime_namespace
