"""Command line: ``imagereflector controller`` (the manager) and ``imagereflector scan``.

Flag names and defaults of ``controller`` are Flux's (contract §4.1), so a Flux
Deployment's ``args`` work unchanged. ``scan`` runs one scan through the controller's own
code path (``controllers.scan``) with no cluster; on failure it prints the same reason
and message the controller would put in the Ready condition and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from imagereflector import __version__
from imagereflector.api import meta
from imagereflector.api.compat import Compatibility
from imagereflector.app.install import ClusterUnreachableError, install_crds
from imagereflector.app.malloc import cap_malloc_arenas
from imagereflector.app.manager import run_controller
from imagereflector.app.policy import PolicyOptions, run_policy
from imagereflector.app.scan import ScanOptions, run_scan
from imagereflector.config import Settings, duration_seconds, parse_bool, parse_feature_gates
from imagereflector.kube.client import KubeConfigError
from imagereflector.kube.leader import LeadershipLostError
from imagereflector.log import get_logger, setup_cli_logging, setup_logging
from imagereflector.registry.tags import ExclusionError, compile_exclusions


def _add_registry_options(parser: argparse.ArgumentParser) -> None:
    """How to reach the registry: shared by ``scan`` and ``policy``."""
    parser.add_argument("--insecure", action="store_true",
                        help="use plain HTTP to the registry (spec.insecure)")
    parser.add_argument("--exclude", action="append", default=None, metavar="REGEX",
                        help="exclusion pattern (RE2), repeatable; default '^.*\\.sig$'")
    parser.add_argument("--docker-config", type=Path, metavar="FILE",
                        help="a docker config.json or .dockerconfigjson to take credentials "
                        "from")
    parser.add_argument("--username", default="", help="registry user name")
    parser.add_argument("--password", default="",
                        help="registry password (prefer --password-stdin: argv is visible)")
    parser.add_argument("--password-stdin", action="store_true",
                        help="read the registry password from standard input")
    parser.add_argument("--ca-file", type=Path, help="extra CA certificates (PEM) to trust")
    parser.add_argument("--cert-file", type=Path,
                        help="client certificate (PEM) for mutual TLS")
    parser.add_argument("--key-file", type=Path, help="client private key (PEM) for mutual TLS")
    parser.add_argument("--timeout", default="1m",
                        help="Go duration bounding the listing (spec.timeout), default 1m")
    parser.add_argument("--max-tag-pages", type=int, default=100,
                        help="stop with an error after this many tag pages (default 100)")
    _add_scan_bounds(parser.add_argument)
    parser.add_argument("--output", "-o", choices=("text", "json"), default="text")


def _add_scan_bounds(add: Callable[..., Any]) -> None:
    """The whole-scan bounds, shared by ``controller``, ``scan`` and ``policy``."""
    d = Settings()
    add("--max-tags-per-scan", type=_positive_int, default=d.max_tags_per_scan,
        metavar="N", help="stop a scan with an error past this many tags across all pages "
        f"(default {d.max_tags_per_scan})")
    add("--max-tag-bytes-per-scan", type=_byte_size, default=d.max_tag_bytes_per_scan,
        metavar="SIZE", help="stop a scan with an error past this many bytes of tag lists "
        "across all pages; a number, or with a Ki, Mi or Gi suffix (default 8Mi)")


_BYTE_SUFFIXES: dict[str, int] = {"": 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
_BYTE_SIZE = re.compile(r"([0-9]+)(Ki|Mi|Gi)?")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _byte_size(text: str) -> int:
    match = _BYTE_SIZE.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 8Mi or 8388608)")
    return _positive_int(match.group(1)) * _BYTE_SUFFIXES[match.group(2) or ""]


def _add_scan_parser(sub: Any) -> None:
    scan = sub.add_parser(
        "scan", help="scan one image repository for tags, no cluster needed",
        description="List the tags of IMAGE exactly as the controller would, apply the "
        "exclusion list and print the ImageRepository status it would write.")
    scan.add_argument("image", metavar="IMAGE",
                      help="repository without tag or digest, e.g. ghcr.io/fluxcd/flux-cli")
    _add_registry_options(scan)
    scan.add_argument("--storage-path", type=Path,
                      help="store the result in <path>/tags.db as the controller does")
    scan.set_defaults(command_parser=scan)


def _add_policy_parser(sub: Any) -> None:
    policy = sub.add_parser(
        "policy", help="show which tag a policy picks and why the others lost",
        description="Evaluate an ImagePolicy over the tags of IMAGE (scanned live) or of "
        "--tags-file, and print the chosen tag, the candidates in policy order and the "
        "reason each rejected tag lost.")
    policy.add_argument("image", metavar="IMAGE", nargs="?",
                        help="repository to scan; omit with --tags-file")
    policy.add_argument("--tags-file", type=Path, metavar="FILE",
                        help="one tag per line ('-' for standard input) instead of a scan")
    policy.add_argument("--policy-file", "-f", type=Path, metavar="FILE",
                        help="an ImagePolicy manifest (its policy and filterTags)")
    choice = policy.add_mutually_exclusive_group()
    choice.add_argument("--semver", metavar="RANGE", help="semver range, e.g. '>=1.0.0 <2'")
    choice.add_argument("--alphabetical", choices=("asc", "desc"), metavar="ORDER",
                        help="asc (latest = last) or desc")
    choice.add_argument("--numerical", choices=("asc", "desc"), metavar="ORDER",
                        help="asc (latest = largest) or desc")
    policy.add_argument("--filter-pattern", default="", metavar="REGEX",
                        help="filterTags.pattern (RE2)")
    policy.add_argument("--filter-extract", default="", metavar="TEMPLATE",
                        help="filterTags.extract, e.g. '$version'")
    policy.add_argument("--top", type=int, default=10, help="how many candidates to show")
    _add_registry_options(policy)
    policy.set_defaults(command_parser=policy)


class _GoBool(argparse.Action):
    """A pflag-style boolean: ``--flag`` means true, ``--flag=false`` is accepted too."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs="?", const="true", **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        try:
            setattr(namespace, self.dest, parse_bool(str(values)))
        except ValueError as err:
            parser.error(f"{option_string}: {err}")


def _go_duration(text: str) -> float:
    try:
        return duration_seconds(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _add_controller_parser(sub: Any) -> None:
    ctl = sub.add_parser(
        "controller", help="run the controller (Flux image-reflector-controller flags)",
        description="Watch ImageRepositories and ImagePolicies and reconcile them. Flag "
        "names and defaults are Flux's image-reflector-controller's.")
    d = Settings()
    add = ctl.add_argument
    add("--metrics-addr", default=d.metrics_addr, help="address of /metrics")
    add("--events-addr", default=d.events_addr,
        help="notification-controller URL to forward events to")
    add("--health-addr", default=d.health_addr, help="address of /healthz and /readyz")
    add("--storage-path", default=d.storage_path, help="directory of the tag database")
    add("--storage-value-log-file-size", type=int, default=d.storage_value_log_file_size,
        help="accepted for compatibility with Flux; SQLite has no value log")
    add("--concurrent", type=int, default=d.concurrent, help="concurrent reconciles per kind")
    for flag in ("--aws-autologin-for-ecr", "--gcp-autologin-for-gcr",
                 "--azure-autologin-for-acr"):
        add(flag, action=_GoBool, default=False, help="deprecated: use spec.provider")
    add("--kube-api-qps", type=float, default=d.kube_api_qps)
    add("--kube-api-burst", type=int, default=d.kube_api_burst)
    add("--kubeconfig", default="", help="kubeconfig path (default: $KUBECONFIG, in-cluster)")
    add("--log-level", default=d.log_level, choices=("trace", "debug", "info", "error"))
    add("--log-encoding", default=d.log_encoding, choices=("json", "console"))
    add("--enable-leader-election", action=_GoBool, default=d.enable_leader_election)
    add("--leader-election-release-on-cancel", action=_GoBool,
        default=d.leader_election_release_on_cancel)
    add("--leader-election-lease-duration", type=_go_duration,
        default=d.leader_election_lease_duration)
    add("--leader-election-renew-deadline", type=_go_duration,
        default=d.leader_election_renew_deadline)
    add("--leader-election-retry-period", type=_go_duration,
        default=d.leader_election_retry_period)
    add("--no-cross-namespace-refs", action=_GoBool, default=d.no_cross_namespace_refs)
    add("--min-retry-delay", type=_go_duration, default=d.min_retry_delay)
    add("--max-retry-delay", type=_go_duration, default=d.max_retry_delay)
    add("--feature-gates", default="", help="Key=bool,... (CacheSecretsAndConfigMaps)")
    add("--watch-all-namespaces", action=_GoBool, default=d.watch_all_namespaces)
    add("--watch-label-selector", default=d.watch_label_selector)
    add("--registry-qps", type=float, default=d.registry_qps,
        help="requests per second per registry host (0 = unlimited)")
    add("--registry-burst", type=int, default=d.registry_burst)
    add("--max-tag-pages", type=int, default=d.max_tag_pages,
        help="stop a scan with an error after this many tag pages")
    _add_scan_bounds(add)
    add("--flux-compatibility", default=d.flux_compatibility.value,
        choices=[mode.value for mode in Compatibility],
        help="where Flux releases conflict, behave as Flux's controller v0.31 (Flux 2.2, "
        "the default) or v1.2 (today's Flux); see docs/operations.md")
    add("--requeue-dependency", type=_go_duration, default=d.requeue_dependency,
        help="the interval at which failing dependencies are reevaluated")
    add("--default-service-account", default=d.default_service_account,
        help="ServiceAccount used for cloud provider login when an object names none "
        "(needs --feature-gates=ObjectLevelWorkloadIdentity=true)")
    add("--token-cache-max-size", type=int, default=d.token_cache_max_size,
        help="how many cloud tokens to cache (0 disables the cache)")
    add("--token-cache-max-duration", type=_go_duration, default=d.token_cache_max_duration,
        help="how long a cloud token is cached at most (at most 1h)")
    add("--gc-interval", type=int, default=d.gc_interval_minutes,
        help="accepted for compatibility with Flux; the SQLite store needs no GC")
    add("--storage-compression-threshold", type=int, default=d.storage_compression_threshold,
        help="accepted for compatibility with Flux; the SQLite store does not compress")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from parsed ``controller`` flags (and ``RUNTIME_NAMESPACE``)."""
    return Settings(
        metrics_addr=args.metrics_addr, events_addr=args.events_addr,
        health_addr=args.health_addr, storage_path=args.storage_path,
        storage_value_log_file_size=args.storage_value_log_file_size,
        concurrent=args.concurrent, aws_autologin_for_ecr=args.aws_autologin_for_ecr,
        gcp_autologin_for_gcr=args.gcp_autologin_for_gcr,
        azure_autologin_for_acr=args.azure_autologin_for_acr,
        kube_api_qps=args.kube_api_qps, kube_api_burst=args.kube_api_burst,
        kubeconfig=args.kubeconfig, log_level=args.log_level, log_encoding=args.log_encoding,
        enable_leader_election=args.enable_leader_election,
        leader_election_release_on_cancel=args.leader_election_release_on_cancel,
        leader_election_lease_duration=args.leader_election_lease_duration,
        leader_election_renew_deadline=args.leader_election_renew_deadline,
        leader_election_retry_period=args.leader_election_retry_period,
        no_cross_namespace_refs=args.no_cross_namespace_refs,
        min_retry_delay=args.min_retry_delay, max_retry_delay=args.max_retry_delay,
        feature_gates=parse_feature_gates(args.feature_gates),
        watch_all_namespaces=args.watch_all_namespaces,
        watch_label_selector=args.watch_label_selector,
        runtime_namespace=os.environ.get("RUNTIME_NAMESPACE", ""),
        registry_qps=args.registry_qps, registry_burst=args.registry_burst,
        max_tag_pages=args.max_tag_pages, max_tags_per_scan=args.max_tags_per_scan,
        max_tag_bytes_per_scan=args.max_tag_bytes_per_scan,
        flux_compatibility=Compatibility.parse(args.flux_compatibility),
        requeue_dependency=args.requeue_dependency,
        default_service_account=args.default_service_account,
        token_cache_max_size=args.token_cache_max_size,
        token_cache_max_duration=min(args.token_cache_max_duration, 3600.0),
        gc_interval_minutes=args.gc_interval,
        storage_compression_threshold=args.storage_compression_threshold,
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``imagereflector`` argument parser with its subcommands."""
    parser = argparse.ArgumentParser(
        prog="imagereflector",
        description="A Flux-compatible image reflector controller (image.toolkit.fluxcd.io).")
    parser.add_argument("--version", action="version", version=f"imagereflector {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_controller_parser(sub)
    _add_scan_parser(sub)
    _add_policy_parser(sub)
    install = sub.add_parser(
        "install-crds", help="create the ImageRepository and ImagePolicy CRDs when missing")
    install.add_argument("--kubeconfig", default="", help="kubeconfig path")
    return parser


def _scan_options(args: argparse.Namespace) -> ScanOptions:
    password: str = args.password
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    return ScanOptions(
        image=args.image, insecure=args.insecure,
        exclusions=tuple(args.exclude) if args.exclude else (),
        docker_config=args.docker_config, username=args.username, password=password,
        ca_file=args.ca_file, cert_file=args.cert_file, key_file=args.key_file,
        timeout=args.timeout, storage_path=getattr(args, "storage_path", None),
        max_tag_pages=args.max_tag_pages, max_tags_per_scan=args.max_tags_per_scan,
        max_tag_bytes_per_scan=args.max_tag_bytes_per_scan,
    )


def _run_controller(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
    except ValueError as err:
        parser.error(str(err))
    if not settings.watch_all_namespaces and not settings.runtime_namespace:
        parser.error("--watch-all-namespaces=false needs RUNTIME_NAMESPACE to be set")
    setup_logging(level=settings.log_level, encoding=settings.log_encoding)
    try:
        settings.validate()
    except ValueError as err:
        # As Flux: one "invalid configuration" line with the reason, exit 1.
        get_logger("setup").error("invalid configuration", extra={"error": str(err)})
        return 1
    if (settings.aws_autologin_for_ecr or settings.gcp_autologin_for_gcr
            or settings.azure_autologin_for_acr):
        get_logger("setup").error(
            "use of deprecated flags: autologin flags have been deprecated, use "
            "spec.provider on ImageRepository objects instead")
    # Before asyncio.run: the event loop's executor threads come later.
    cap_malloc_arenas()
    code = 0
    try:
        asyncio.run(run_controller(settings))
    except* LeadershipLostError:
        get_logger("setup").error("leader election lost; exiting so the Pod restarts")
        code = 1
    except* (ValueError, KubeConfigError) as group:
        get_logger("setup").error(str(group.exceptions[0]))
        code = 1
    return code


def _install_crds(_: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        created = asyncio.run(install_crds(kubeconfig=args.kubeconfig or None))
    except ClusterUnreachableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for name in created:
        print(f"created CustomResourceDefinition {name}")
    if not created:
        print("CustomResourceDefinitions already present")
    return 0


def _check_exclusions(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A pattern that does not compile is a usage error, not a failed scan."""
    for pattern in args.exclude or ():
        try:
            compile_exclusions([pattern])
        except ExclusionError as err:
            parser.error(f"--exclude: {err}")


def _report_failure(args: argparse.Namespace, reason: str, message: str) -> None:
    """Print the controller's reason and message (and, on a terminal, what to do)."""
    if args.output == "json":
        print(json.dumps({"reason": reason, "message": message}))
    print(f"{reason}: {message}", file=sys.stderr)
    explain = _HINTS.get(reason)
    hint = explain(message) if explain is not None else ""
    if hint:
        print(f"hint: {hint}", file=sys.stderr)


def _reference_hint(message: str) -> str:
    # The message is Flux's and stays so; the hint is for the person at the terminal.
    image = message.rsplit(": ", 1)[-1]
    first, _, rest = image.partition("/")
    is_host = bool(rest) and ("." in first or ":" in first or first == "localhost")
    repository = rest if is_host else image
    if any(char.isupper() for char in repository.split(":", 1)[0].split("@", 1)[0]):
        return "repository names must be lower case (only the registry host may have capitals)"
    return ""


_HINTS: dict[str, Callable[[str], str]] = {
    meta.IMAGE_URL_INVALID_REASON: _reference_hint,
}


def _scan(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    _check_exclusions(parser, args)
    setup_cli_logging()
    outcome = asyncio.run(run_scan(_scan_options(args)))
    if outcome.error is not None:
        _report_failure(args, *outcome.error)
        return 1
    print(outcome.render(args.output))
    return 0


def _policy(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if (args.image is None) == (args.tags_file is None):
        parser.error("give exactly one of IMAGE or --tags-file")
    if args.policy_file is None and args.semver is None and args.alphabetical is None \
            and args.numerical is None:
        parser.error("give a policy: --semver RANGE, --alphabetical asc|desc, "
                     "--numerical asc|desc, or -f IMAGEPOLICY.yaml")
    _check_exclusions(parser, args)
    setup_cli_logging()
    reads_stdin = args.tags_file is not None and str(args.tags_file) == "-"
    if reads_stdin and args.password_stdin:
        parser.error("--tags-file - and --password-stdin both want standard input")
    options = PolicyOptions(
        scan=_scan_options(args) if args.image is not None else None,
        tags_file=args.tags_file, stdin_text=sys.stdin.read() if reads_stdin else "",
        policy_file=args.policy_file, semver=args.semver, alphabetical=args.alphabetical,
        numerical=args.numerical, pattern=args.filter_pattern, extract=args.filter_extract,
        top=args.top)
    outcome = asyncio.run(run_policy(options))
    if outcome.error is not None:
        _report_failure(args, *outcome.error)
        return 1
    print(outcome.render(args.output, top=args.top))
    evaluation = outcome.evaluation
    return 0 if evaluation is not None and evaluation.latest is not None else 1


_COMMANDS: dict[str, Callable[[argparse.ArgumentParser, argparse.Namespace], int]] = {
    "controller": _run_controller,
    "install-crds": _install_crds,
    "scan": _scan,
    "policy": _policy,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``imagereflector`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Usage errors name the subcommand's own usage, not the top-level one.
    return _COMMANDS[args.command](getattr(args, "command_parser", parser), args)


if __name__ == "__main__":
    raise SystemExit(main())
