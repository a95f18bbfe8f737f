"""Secrets at rest: password hashes (argon2id), token and session secrets (stored as SHA-256),
and the installation key that signs session cookies and encrypts secret env values."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken

from taskdash.core.config import Settings

KEY_FILE = "secret.key"
HASHER = PasswordHasher()  # argon2id, 64 MiB, 3 passes: the library's (RFC 9106) defaults


def hash_password(password: str) -> str:
    return HASHER.hash(password)


@cache
def dummy_hash() -> str:
    """Verified when the name is unknown, so a wrong name costs as long as a wrong password."""
    return HASHER.hash("taskdash: no such user")


def verify_password(stored: str, password: str) -> bool:
    try:
        return HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def new_secret(prefix: str) -> str:
    """A random secret (256 bits) with a prefix that says what it is, e.g. `tdt_...`."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def secret_hash(secret: str) -> str:
    """How a high-entropy secret is stored: SHA-256 is enough (nothing to guess)."""
    return hashlib.sha256(secret.encode()).hexdigest()


class SecretsUnreadable(Exception):
    """Secret env values encrypted with another key (TASKDASH_SECRET_KEY changed)."""


@dataclass(frozen=True)
class Keys:
    """Keys derived from the installation's one secret, one per purpose."""

    master: bytes

    def derive(self, purpose: str) -> bytes:
        return hmac.new(self.master, purpose.encode(), hashlib.sha256).digest()

    @property
    def session_key(self) -> bytes:
        return self.derive("taskdash session cookies")

    def _fernet(self) -> Fernet:
        return Fernet(base64.urlsafe_b64encode(self.derive("taskdash secret env")))

    def seal(self, values: dict[str, str]) -> bytes:
        return self._fernet().encrypt(json.dumps(values, sort_keys=True).encode())

    def unseal(self, sealed: bytes) -> dict[str, str]:
        try:
            data = json.loads(self._fernet().decrypt(bytes(sealed)))
        except InvalidToken:
            raise SecretsUnreadable(
                "the task's secret values were encrypted with another TASKDASH_SECRET_KEY"
            ) from None
        return {str(key): str(value) for key, value in data.items()}


def load_keys(settings: Settings) -> Keys:
    """From TASKDASH_SECRET_KEY, else from the key file in the data dir (made once, 0600)."""
    if settings.secret_key:
        return Keys(settings.secret_key.encode())
    path = settings.data_dir / KEY_FILE
    if not path.exists():
        write_key_file(path)
    return Keys(path.read_bytes().strip())


def write_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48).encode()
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key + b"\n")
