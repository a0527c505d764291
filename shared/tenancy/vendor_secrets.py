"""A tenant's own vendor keys (Deepgram, ElevenLabs, OpenAI): encrypted by the application, stored in
`public.tenant_vendor_secrets` (migration 0006), read back one tenant at a time.

Why an encrypted column and not one Secrets Manager secret per tenant: a call needs its tenant's keys on
every start, from every task. In the database they come with the tenant's other data (one indexed read,
cached as ciphertext in Redis and dropped on change, so a rotation is seen by the next call); per-tenant
secrets would cost $0.40 a month each ($4,000 a month at 10,000 tenants), an API call per cache miss on the
call path, an IAM grant on a name pattern, and a cache that cannot be invalidated from the admin CLI.
What the column must not give up, it keeps: the ciphertext is useless without the data key, which lives in
Secrets Manager (the app secret) in AWS and in the local secrets locally, never in the database; the app
role cannot read the table (a SECURITY DEFINER function returns one tenant's ciphertexts); keys never
appear in tenant settings, in the tenant API, or in logs (`VendorKey.__repr__` hides them).

The data key: `TENANT_SECRETS_KEY` (comma-separated: the first encrypts, all decrypt, so the data key
itself can be rotated), else derived from `STREAM_TOKEN_SECRET` with HKDF under its own label. In AWS it
is the derived one: the tasks are given STREAM_TOKEN_SECRET from the app secret and nothing else of it, and
the admin CLI reads the same field through Secrets Manager. Rotating STREAM_TOKEN_SECRET therefore needs
`TENANT_SECRETS_KEY=<new>,<old>` on the tasks and the CLI (then `vendor-keys rotate` re-encrypts), or the
tenants' keys set again. Fernet
(AES-128-CBC + HMAC-SHA256, authenticated: a tampered or foreign ciphertext fails, it never decrypts to
garbage).
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args
from uuid import UUID

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.settings import Settings

log = logging.getLogger(__name__)

VendorName = Literal["deepgram", "elevenlabs", "openai"]
VENDOR_NAMES: tuple[str, ...] = get_args(VendorName)
_HKDF_INFO = b"voice-agent tenant vendor keys v1"


class VendorKeyError(ValueError):
    """No data key, or a ciphertext this data key cannot open."""


def _fernet(material: str) -> Fernet:
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(material.encode())
    return Fernet(base64.urlsafe_b64encode(raw))


class VendorKeyCipher:
    def __init__(self, materials: list[str]) -> None:
        materials = [m.strip() for m in materials if m.strip()]
        if not materials:
            raise VendorKeyError("no data key for tenant vendor keys (TENANT_SECRETS_KEY or STREAM_TOKEN_SECRET)")
        self._fernet = MultiFernet([_fernet(m) for m in materials])

    @classmethod
    def from_material(cls, tenant_secrets_key: str, stream_token_secret: str = "") -> VendorKeyCipher:
        if tenant_secrets_key.strip():
            return cls(tenant_secrets_key.split(","))
        return cls([stream_token_secret])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise VendorKeyError("ciphertext does not open with this data key") from None


@dataclass(frozen=True)
class VendorKey:
    """A tenant's key for one vendor. Its repr never shows the key (it may end up in a log line)."""

    vendor: str
    value: str

    def __repr__(self) -> str:
        return f"VendorKey({self.vendor}, ****)"

    __str__ = __repr__


def decrypt_all(cipher: VendorKeyCipher | None, ciphertexts: dict[str, str], tenant_id: UUID | str
                ) -> dict[str, VendorKey]:
    """The tenant's keys that open; one that does not is logged (vendor only) and skipped, so the call uses
    the platform's account for that vendor rather than failing."""
    keys: dict[str, VendorKey] = {}
    for vendor, ciphertext in ciphertexts.items():
        if cipher is None:
            log.warning("tenant vendor key present but no data key here", extra={"tenant_id": str(tenant_id),
                                                                                 "vendor": vendor})
            continue
        try:
            keys[vendor] = VendorKey(vendor, cipher.decrypt(ciphertext))
        except VendorKeyError:
            log.warning("tenant vendor key does not decrypt", extra={"tenant_id": str(tenant_id), "vendor": vendor})
    return keys


def cipher_from_settings(settings: Settings) -> VendorKeyCipher | None:
    """The service's cipher: TENANT_SECRETS_KEY, else STREAM_TOKEN_SECRET (both injected from the app
    secret in AWS, local secrets locally). None when neither is set (tenant keys then go unused)."""
    try:
        return VendorKeyCipher.from_material(settings.secret("tenant_secrets_key"),
                                             settings.secret("stream_token_secret"))
    except VendorKeyError:
        return None


def cipher_for_admin(settings: Settings, local_secrets_file: Path | None = None) -> VendorKeyCipher:
    """The admin CLI's cipher, from the first place that has a data key: the environment; the app secret in
    Secrets Manager (`APP_SECRET_ARN`, as in AWS); the local server's generated secrets file."""
    if settings.secret("tenant_secrets_key") or settings.secret("stream_token_secret"):
        return VendorKeyCipher.from_material(settings.secret("tenant_secrets_key"),
                                             settings.secret("stream_token_secret"))
    if settings.app_secret_arn:
        from shared.app_secrets import load_app_secrets

        # Only STREAM_TOKEN_SECRET: it is what the tasks are given from this secret (infra injects the
        # fields of APP_SECRET_FIELDS), so what the CLI encrypts, every task can open.
        app = load_app_secrets(settings.app_secret_arn)
        return VendorKeyCipher.from_material("", app.stream_token_secret)
    if local_secrets_file is not None and local_secrets_file.exists():
        local = json.loads(local_secrets_file.read_text())
        return VendorKeyCipher.from_material(str(local.get("tenant_secrets_key") or ""),
                                             str(local.get("stream_token_secret") or ""))
    raise VendorKeyError("no data key: set TENANT_SECRETS_KEY or STREAM_TOKEN_SECRET, or APP_SECRET_ARN in AWS")
