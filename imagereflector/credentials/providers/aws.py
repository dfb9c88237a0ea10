"""AWS ECR login: an access token (AWS keys), then ``GetAuthorizationToken`` with it.

The controller's own keys come from boto3's default chain: environment keys, shared
config and profiles, IRSA web identity (``AWS_ROLE_ARN`` + ``AWS_WEB_IDENTITY_TOKEN_FILE``),
container and instance metadata. An object's ServiceAccount (object-level workload
identity) gets its keys from STS ``AssumeRoleWithWebIdentity`` with the role of its
``eks.amazonaws.com/role-arn`` annotation and a Kubernetes token for ``sts.amazonaws.com``,
in the ECR region, as Flux v1.2 does (session name ``<sa>.<namespace>.<region>.fluxcd.io``).
botocore honours ``AWS_ENDPOINT_URL_ECR``, ``AWS_ENDPOINT_URL_ECR_PUBLIC`` and
``AWS_ENDPOINT_URL_STS`` by itself, which is how VPC endpoints, and the tests' moto
server, are reached. The region of the v0.31 path comes from the image string
(contract §2.5.2).

Invariants:

* boto3 blocks, so every SDK call runs in a worker thread; the event loop never waits on
  it. A fresh boto3 session per call reads the environment as it is now.
* Timeouts and retries are bounded (``connect_timeout``, ``read_timeout``,
  ``max_attempts``), so a black-holed endpoint cannot hold a reconcile forever.
* The decoded token and the keys are only ever put into ``Credentials`` or ``AwsKeys``
  (whose repr shows nothing); error messages say how a token is malformed, never what
  it contains.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import boto3
import botocore
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from imagereflector.credentials.providers.base import (
    Account,
    ProviderError,
    ProviderToken,
    TokenOptions,
    sanitize,
)
from imagereflector.credentials.providers.cache import Expiring
from imagereflector.credentials.providers.classify import (
    AWS,
    AWS_AUDIENCE,
    PUBLIC_ECR,
    IdentityError,
    aws_role_arn,
    parse_ecr,
)
from imagereflector.registry.types import Credentials

DISPLAY: Final = "ECR"
PUBLIC_ECR_REGION: Final = "us-east-1"
"""The public gallery's tokens come from ``ecr-public`` in us-east-1 only."""


@dataclass(frozen=True, slots=True)
class AwsKeys:
    """AWS credentials (the access token of the AWS steps); shows nothing in its repr."""

    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    session_token: str = field(default="", repr=False)


def _epoch(moment: object) -> float | None:
    return moment.timestamp() if isinstance(moment, datetime) else None


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
    """Logs in to ECR as the controller's AWS identity or as an object's IAM role."""

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
        options = TokenOptions(region=ecr.region)
        keys = await self.controller_token(options)
        found = await self.registry_credentials(ecr.region, keys, options)
        return ProviderToken(credentials=found.value, expires_at=found.expires_at)

    async def controller_token(self, options: TokenOptions) -> Expiring[object]:
        """The controller's keys from the default chain (no expiry for static keys)."""
        return await asyncio.to_thread(self._default_keys, options.region)

    async def audiences(self, account: Account) -> list[str]:
        """``sts.amazonaws.com``."""
        return [AWS_AUDIENCE]

    async def service_account_token(self, oidc_token: str, account: Account,
                                    options: TokenOptions) -> Expiring[object]:
        """Keys of the annotated role, from ``AssumeRoleWithWebIdentity`` in the region."""
        try:
            role_arn = aws_role_arn(dict(account))
        except IdentityError as err:
            raise ProviderError(DISPLAY, str(err)) from None
        metadata = account.get("metadata") or {}
        session_name = (f"{metadata.get('name', '')}.{metadata.get('namespace', '')}."
                        f"{options.region}.fluxcd.io")
        return await asyncio.to_thread(self._assume_role, options.region, role_arn,
                                       session_name, oidc_token)

    async def registry_credentials(self, registry_input: str, token: Expiring[object],
                                   options: TokenOptions) -> Expiring[Credentials]:
        """``GetAuthorizationToken`` with ``token``'s keys in the region (``ecr-public`` for
        ``public.ecr.aws``)."""
        if not isinstance(token.value, AwsKeys):
            raise ProviderError(DISPLAY, "the access token is not AWS credentials")
        data = await asyncio.to_thread(self._authorization_data, registry_input, token.value)
        decoded = decode_authorization_data(data)
        return Expiring(decoded.credentials, decoded.expires_at)

    def _default_keys(self, region: str) -> Expiring[object]:
        """Blocking: the default chain's keys, resolved now (web identity calls STS)."""
        try:
            session = boto3.session.Session(region_name=region or None)
            found = session.get_credentials()
            if found is None:
                raise ProviderError(DISPLAY, "Unable to locate credentials")
            frozen = found.get_frozen_credentials()
        except (BotoCoreError, ClientError) as err:
            raise ProviderError(DISPLAY, sanitize(str(err))) from None
        keys = AwsKeys(frozen.access_key or "", frozen.secret_key or "", frozen.token or "")
        secrets = [keys.secret_access_key, keys.session_token]
        if not keys.access_key_id or not keys.secret_access_key:
            raise ProviderError(DISPLAY, sanitize("incomplete credentials", secrets=secrets))
        return Expiring(keys, _epoch(getattr(found, "_expiry_time", None)))

    def _assume_role(self, region: str, role_arn: str, session_name: str,
                     oidc_token: str) -> Expiring[object]:
        """Blocking: STS ``AssumeRoleWithWebIdentity`` (unsigned: the token is the proof)."""
        config = self._config.merge(Config(signature_version=botocore.UNSIGNED))
        try:
            session = boto3.session.Session(region_name=region)
            client = session.client("sts", region_name=region, config=config)
            try:
                response = client.assume_role_with_web_identity(
                    RoleArn=role_arn, RoleSessionName=session_name,
                    WebIdentityToken=oidc_token)
            finally:
                client.close()
        except (BotoCoreError, ClientError) as err:
            raise ProviderError(DISPLAY, sanitize(str(err), secrets=[oidc_token])) from None
        found = response.get("Credentials")
        if not isinstance(found, dict):
            raise ProviderError(DISPLAY, "credentials are nil")
        keys = AwsKeys(str(found.get("AccessKeyId", "")), str(found.get("SecretAccessKey", "")),
                       str(found.get("SessionToken", "")))
        # Flux treats a missing expiration as the zero time: never reused.
        return Expiring(keys, _epoch(found.get("Expiration")))

    def _authorization_data(self, region: str, keys: AwsKeys) -> list[Mapping[str, Any]]:
        """Blocking: the ``authorizationData`` list (one entry for ECR Public)."""
        public = region == PUBLIC_ECR
        region = PUBLIC_ECR_REGION if public else region
        try:
            session = boto3.session.Session(
                aws_access_key_id=keys.access_key_id,
                aws_secret_access_key=keys.secret_access_key,
                aws_session_token=keys.session_token or None, region_name=region)
            client = session.client("ecr-public" if public else "ecr", region_name=region,
                                    config=self._config)
            try:
                response = client.get_authorization_token()
            finally:
                client.close()
        except (BotoCoreError, ClientError) as err:
            # botocore messages name operations, error codes and endpoints, not keys; they
            # are sanitised anyway and not chained, like every provider error.
            secrets = [keys.secret_access_key, keys.session_token]
            raise ProviderError(DISPLAY, sanitize(str(err), secrets=secrets)) from None
        data = response.get("authorizationData", [])
        return [data] if isinstance(data, dict) else list(data)
