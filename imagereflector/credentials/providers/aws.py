"""AWS ECR login: ``GetAuthorizationToken`` with the default credential chain.

The region comes from the image string (contract §2.5.2); credentials come from boto3's
default chain: environment keys, shared config and profiles, IRSA web identity
(``AWS_ROLE_ARN`` + ``AWS_WEB_IDENTITY_TOKEN_FILE``), container and instance metadata.
botocore honours ``AWS_ENDPOINT_URL_ECR`` (and ``AWS_ENDPOINT_URL_STS`` for web identity)
by itself, which is how VPC endpoints, and the tests' moto server, are reached.

Invariants:

* boto3 blocks, so every SDK call runs in a worker thread; the event loop never waits on
  it. A fresh boto3 session per login reads the environment as it is now.
* Timeouts and retries are bounded (``connect_timeout``, ``read_timeout``,
  ``max_attempts``), so a black-holed endpoint cannot hold a reconcile forever.
* The decoded token is only ever put into ``Credentials``; error messages say how the
  token is malformed, never what it contains.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from imagereflector.credentials.providers.base import ProviderError, ProviderToken, sanitize
from imagereflector.credentials.providers.classify import AWS, parse_ecr
from imagereflector.registry.types import Credentials

DISPLAY: Final = "ECR"


def decode_authorization_data(data: Sequence[Mapping[str, Any]]) -> ProviderToken:
    """Username, password and expiry from ``GetAuthorizationToken``'s ``authorizationData``.

    Only the first entry counts. Its token must be base64 of ``user:password`` with exactly
    one ``:``, as fluxcd/pkg checks. Raises ``ProviderError`` with the contract's messages.
    """
    if not data:
        raise ProviderError(DISPLAY, "no authorization data")
    raw = data[0].get("authorizationToken")
    if not isinstance(raw, str):
        raise ProviderError(DISPLAY, "no authorization token")
    try:
        decoded = base64.b64decode(raw, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ProviderError(DISPLAY, "invalid authorization token: not base64 text") from None
    parts = decoded.split(":")
    if len(parts) != 2:
        raise ProviderError(
            DISPLAY,
            "invalid authorization token, expected the token to have two parts separated "
            f"by ':', got {len(parts)} parts",
        )
    expires = data[0].get("expiresAt")
    expires_at = expires.timestamp() if isinstance(expires, datetime) else None
    return ProviderToken(
        credentials=Credentials(username=parts[0], password=parts[1]), expires_at=expires_at
    )


class AwsLogin:
    """Logs in to ECR as the controller's AWS identity."""

    def __init__(
        self,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        max_attempts: int = 3,
    ) -> None:
        self._config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
        )

    @property
    def name(self) -> str:
        """``aws``."""
        return AWS

    async def login(self, *, registry: str, image: str) -> ProviderToken:
        """An ECR token for the region named in ``image``; ``registry`` is not needed.

        ``GetAuthorizationToken`` is called without registry ids, as fluxcd/pkg does: the
        token is the caller's own account's.
        """
        ecr = parse_ecr(image)
        if ecr is None:
            raise ProviderError(DISPLAY, "failed to parse AWS ECR image, invalid ECR image")
        data = await asyncio.to_thread(self._authorization_data, ecr.region)
        return decode_authorization_data(data)

    def _authorization_data(self, region: str) -> list[Mapping[str, Any]]:
        """Blocking: the ``authorizationData`` list, or ``ProviderError``."""
        try:
            session = boto3.session.Session(region_name=region)
            client = session.client("ecr", region_name=region, config=self._config)
            try:
                response = client.get_authorization_token()
            finally:
                client.close()
        except (BotoCoreError, ClientError) as err:
            # botocore messages name operations, error codes and endpoints, not keys; they
            # are sanitised anyway and not chained, like every provider error.
            raise ProviderError(DISPLAY, sanitize(str(err))) from None
        return list(response.get("authorizationData", []))
