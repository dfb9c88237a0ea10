"""``imagereflector scan``: one scan with the controller's code path, no cluster.

Credentials come from flags or a docker config file instead of Secrets; everything after
that (reference parsing, listing, exclusion, storing, the status summary) is the same
code the reconciler runs, and failures carry the same reason and message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from imagereflector.api import meta
from imagereflector.api.duration import DurationError, parse_duration
from imagereflector.api.imagerepository import DEFAULT_EXCLUSION_LIST
from imagereflector.app.registry import build_registry_client
from imagereflector.controllers.scan import ScanError, ScanOutcome, scan
from imagereflector.credentials.dockerconfig import DockerConfigError, load_docker_config
from imagereflector.registry.client import DEFAULT_MAX_SCAN_BYTES, DEFAULT_MAX_SCAN_TAGS
from imagereflector.registry.reference import InvalidReferenceError, parse_image_reference
from imagereflector.registry.types import Credentials, RegistryAccess, TLSConfig
from imagereflector.store.base import ObjectKey
from imagereflector.store.sqlite import SqliteTagStore

# The object key under which command-line scans are stored: one row per image.
CLI_NAMESPACE = "imagereflector-scan"


@dataclass(frozen=True, slots=True)
class ScanOptions:
    """The flags of ``imagereflector scan``."""

    image: str
    insecure: bool = False
    exclusions: tuple[str, ...] = ()
    docker_config: Path | None = None
    username: str = ""
    password: str = ""
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    timeout: str = "1m"
    storage_path: Path | None = None
    max_tag_pages: int = 100
    max_tags_per_scan: int = DEFAULT_MAX_SCAN_TAGS
    max_tag_bytes_per_scan: int = DEFAULT_MAX_SCAN_BYTES


@dataclass(frozen=True, slots=True)
class ScanCommandOutcome:
    """Either a scan outcome and the exclusion list used, or (reason, message)."""

    outcome: ScanOutcome | None = None
    exclusions: tuple[str, ...] = ()
    error: tuple[str, str] | None = None

    def render(self, output: Literal["text", "json"] | str) -> str:
        """The status the controller would write: JSON, or ``kubectl describe``-like text."""
        assert self.outcome is not None, "render is only called on success"
        result = self.outcome.result.dump()
        if output == "json":
            return json.dumps({"canonicalImageName": self.outcome.canonical_image,
                               "lastScanResult": result,
                               "observedExclusionList": list(self.exclusions)}, indent=2)
        scanned = self.outcome.result
        lines = [f"Canonical Image Name:  {self.outcome.canonical_image}", "Last Scan Result:"]
        if scanned.latest_tags:
            lines.append("  Latest Tags:")
            lines.extend(f"    {tag}" for tag in scanned.latest_tags)
        lines.append(f"  Revision:   {scanned.revision or ''}")
        lines.append(f"  Scan Time:  {result.get('scanTime', '')}")
        lines.append(f"  Tag Count:  {scanned.tag_count}")
        lines.append("Observed Exclusion List:")
        lines.extend(f"  {pattern}" for pattern in self.exclusions)
        return "\n".join(lines)


def _failure(reason: str, message: str) -> ScanCommandOutcome:
    return ScanCommandOutcome(error=(reason, message))


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as err:
        raise ValueError(f"cannot read {what} {path}: {err.strerror}") from err


def _access(options: ScanOptions, registry: str) -> RegistryAccess:
    """Credentials and TLS material from flags; errors are authentication errors."""
    credentials: Credentials | None = None
    if options.username or options.password:
        credentials = Credentials(username=options.username, password=options.password)
    elif options.docker_config is not None:
        data = _read(options.docker_config, "docker config")
        assert data is not None
        credentials = load_docker_config(data).lookup(registry)
    cert, key = _read(options.cert_file, "certificate"), _read(options.key_file, "key")
    if (cert is None) != (key is None):
        raise ValueError("both certificate and private key need to be provided")
    ca = _read(options.ca_file, "CA file")
    tls = TLSConfig(ca_pem=ca, cert_pem=cert, key_pem=key) if (ca or cert) else None
    return RegistryAccess(credentials=credentials, tls=tls)


async def run_scan(options: ScanOptions) -> ScanCommandOutcome:
    """Run one scan; never raises for bad input, registry or store failures."""
    try:
        ref = parse_image_reference(options.image, insecure=options.insecure)
    except InvalidReferenceError as err:
        return _failure(meta.IMAGE_URL_INVALID_REASON, str(err))
    try:
        timeout_ns = parse_duration(options.timeout)
    except DurationError as err:
        return _failure(meta.FAILED_REASON, f"invalid --timeout: {err}")
    try:
        access = _access(options, ref.registry)
    except (ValueError, DockerConfigError) as err:
        return _failure(meta.AUTHENTICATION_FAILED_REASON,
                        f"failed to configure authentication options: {err}")
    exclusions = options.exclusions or DEFAULT_EXCLUSION_LIST
    client = build_registry_client(qps=0, burst=1, max_pages=options.max_tag_pages,
                                   max_tags=options.max_tags_per_scan,
                                   max_bytes=options.max_tag_bytes_per_scan)
    store = None
    try:
        if options.storage_path is not None:
            store = await SqliteTagStore.open(options.storage_path)
        outcome = await scan(
            lister=client, ref=ref, access=access, exclusions=exclusions,
            timeout_ns=max(timeout_ns, 1), now=datetime.now(UTC).replace(microsecond=0),
            store=store, key=ObjectKey(CLI_NAMESPACE, ref.canonical),
        )
    except ScanError as err:
        return _failure(meta.READ_OPERATION_FAILED_REASON, f"scan failed: {err}")
    finally:
        await client.close()
        if store is not None:
            await store.close()
    return ScanCommandOutcome(outcome=outcome, exclusions=tuple(exclusions))
