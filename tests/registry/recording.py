"""A ``RegistryObserver`` that keeps what it is told, for assertions."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RecordingObserver:
    """Every finished exchange as (host, method, code) and every rate-limit report."""

    requests: list[tuple[str, str, str]] = field(default_factory=list)
    remaining: list[tuple[str, int]] = field(default_factory=list)
    invalid: list[tuple[str, int]] = field(default_factory=list)

    def request_done(self, host: str, method: str, code: str) -> None:
        """Record one exchange."""
        self.requests.append((host, method, code))

    def ratelimit_remaining(self, host: str, remaining: int) -> None:
        """Record one report."""
        self.remaining.append((host, remaining))

    def invalid_tags(self, host: str, count: int) -> None:
        """Record skipped tags."""
        self.invalid.append((host, count))

    def codes(self, host: str | None = None) -> list[str]:
        """The codes seen, optionally for one host only."""
        return [code for h, _, code in self.requests if host is None or h == host]
