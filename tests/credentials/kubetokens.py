"""Checks that a token is the real API server's, for one audience and one ServiceAccount.

The cloud fakes of object-level workload identity use this as the clouds use their OIDC
trust: the token must verify with the test cluster's ServiceAccount signing key (ES256),
carry the cloud's audience and name ``system:serviceaccount:<namespace>:<name>``.
"""

from __future__ import annotations

from collections.abc import Callable

import jwt

from testbed.cluster import SA_ISSUER
from testbed.cluster import Cluster as Testbed


def token_check(testbed: Testbed, *, audience: str, namespace: str,
                name: str) -> Callable[[str], bool]:
    """A predicate: is ``token`` that ServiceAccount's, for ``audience``?"""
    key = (testbed.pki_dir / "sa.pub").read_bytes()

    def check(token: str) -> bool:
        try:
            claims = jwt.decode(token, key, algorithms=["ES256"], audience=audience,
                                issuer=SA_ISSUER)
        except jwt.PyJWTError:
            return False
        return bool(claims.get("sub") == f"system:serviceaccount:{namespace}:{name}")

    return check
