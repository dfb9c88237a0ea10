"""ImagePolicy selection: semver ranges, alphabetical and numerical order, tag filters."""

from imagereflector.policy.alphabetical import AlphabeticalPolicy
from imagereflector.policy.errors import (
    InvalidFilterError,
    InvalidPolicyError,
    PolicyError,
    SelectionError,
)
from imagereflector.policy.factory import (
    PolicyChoice,
    apply_policy,
    build_policer,
    evaluate,
    rejections_best_first,
    select_latest,
)
from imagereflector.policy.filter import FilterResult, TagFilter
from imagereflector.policy.numerical import NumericalPolicy
from imagereflector.policy.policer import Candidate, Evaluation, Policer, Rejection
from imagereflector.policy.semver import SemVerPolicy

__all__ = [
    "AlphabeticalPolicy",
    "Candidate",
    "Evaluation",
    "FilterResult",
    "InvalidFilterError",
    "InvalidPolicyError",
    "NumericalPolicy",
    "Policer",
    "PolicyChoice",
    "PolicyError",
    "Rejection",
    "SelectionError",
    "SemVerPolicy",
    "TagFilter",
    "apply_policy",
    "build_policer",
    "evaluate",
    "rejections_best_first",
    "select_latest",
]
