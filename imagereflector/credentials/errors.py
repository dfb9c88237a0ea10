"""The one error of credential resolution, and reading a Secret's values.

Every failure to configure an object's registry access is a ``CredentialsError`` whose
text follows ``failed to configure authentication options: `` in the Ready condition.
Messages name Secrets, keys and types, never the values.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any


class CredentialsError(Exception):
    """Credentials or TLS material could not be configured from the object's references."""


def secret_value(secret: dict[str, Any], key: str) -> bytes | None:
    """The decoded value of ``data[key]``, None when absent; bad base64 is an error."""
    data = secret.get("data") or {}
    if not isinstance(data, dict) or key not in data:
        return None
    raw = data[key]
    name = secret.get("metadata", {}).get("name", "")
    if not isinstance(raw, str):
        raise CredentialsError(f"secret '{name}' key '{key}' is not a base64 string")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as err:
        raise CredentialsError(f"secret '{name}' key '{key}' is not valid base64") from err
