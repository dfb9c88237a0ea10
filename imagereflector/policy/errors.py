"""Error types of the policy package, classified by what the controller does with them.

Invariants:

* ``InvalidPolicyError`` means the ImagePolicy *spec* is unusable (bad semver
  range, bad order, bad filter regex). Retrying cannot help, so the controller
  marks the object Stalled with reason ``InvalidPolicy``.
* ``SelectionError`` means the spec is fine but no tag could be chosen from the
  current tag list (empty list, nothing in range, a non-numeric tag under a
  numerical policy). The controller reports Ready=False ``Failure`` and retries.
* ``str(error)`` is exactly the Flux v0.31 message (no prefix); the controller
  adds ``invalid policy: `` or ``failed to filter tags: `` itself.
"""

from __future__ import annotations

from typing import Final

#: Returned by every policy when it is given no tags at all.
MSG_EMPTY_LIST: Final = "version list argument cannot be empty"
#: Returned by the semver policy when no tag is a strict semver inside the range.
MSG_NO_LATEST: Final = "unable to determine latest version from provided list"
#: Returned by the factory when no policy kind is set.
MSG_INVALID_CHOICE: Final = "given ImagePolicyChoice object is invalid"


def msg_invalid_numeric(tag: str) -> str:
    """Message for a tag the numerical policy cannot parse as a float."""
    return f"failed to parse invalid numeric value '{tag}'"


def msg_invalid_order(order: str) -> str:
    """Message for an order other than ASC/DESC (after upper-casing)."""
    return f"invalid order argument provided: '{order}', must be one of: ASC, DESC"


class PolicyError(Exception):
    """Base class of every error raised by ``imagereflector.policy``."""


class InvalidPolicyError(PolicyError):
    """The policy spec cannot be used (range, order or choice is invalid)."""


class InvalidFilterError(InvalidPolicyError):
    """The ``filterTags.pattern`` does not compile.

    A subclass of ``InvalidPolicyError`` because the controller stalls on it the
    same way; a separate type because Flux prefixes its condition message with
    ``failed to filter tags: `` instead of ``invalid policy: ``.
    """


class SelectionError(PolicyError):
    """The policy is valid but no tag can be selected from the given list."""
