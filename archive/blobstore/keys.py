"""Key-encryption keys: the KeyProvider interface and the default local key-file provider.

Each organisation's data keys (DEKs) encrypt its blobs; a DEK is stored only wrapped by
a key-encryption key (KEK) that a KeyProvider holds. The Django layer keeps wrapped DEKs
in the database and unwraps them on demand. A KMS or Vault Transit adapter implements the
same five methods: ``wrap``/``unwrap`` become Encrypt/Decrypt calls (Vault: transit
encrypt/decrypt with the key version carried in the ciphertext), ``rotate`` creates a new
key version, ``retire`` disables an old one.

Wrapping uses AES-256-GCM rather than AES key wrap (RFC 3394/5649): GCM takes associated
data, so the wrapped blob is bound to the KEK id it claims (and to this purpose), and it is
the same primitive a KMS uses, so there is one construction to review. Key wrap's
advantage, a deterministic output without a nonce, buys nothing here: DEKs are wrapped
rarely, and a random 96-bit nonce per wrap is far from any collision bound.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import BlobStoreError, IntegrityError, KeyNotFound

DEK_SIZE = 32
KEK_SIZE = 32


def generate_dek() -> bytes:
    """Return a new random 256-bit data key."""
    return secrets.token_bytes(DEK_SIZE)


@dataclass(frozen=True)
class WrappedKey:
    """A DEK encrypted under the KEK named by ``kek_id``; safe to store in the database."""

    kek_id: str
    blob: bytes


class KeyProvider(ABC):
    """Holds key-encryption keys and wraps/unwraps DEKs with them."""

    @abstractmethod
    def current_kek_id(self) -> str:
        """Id of the KEK that new wraps use (created on first use where the provider can)."""

    @abstractmethod
    def wrap(self, dek: bytes) -> WrappedKey:
        """Encrypt a DEK under the current KEK."""

    @abstractmethod
    def unwrap(self, wrapped: WrappedKey) -> bytes:
        """Decrypt a DEK; KeyNotFound if its KEK is unknown or retired, IntegrityError if forged."""

    @abstractmethod
    def rotate(self) -> str:
        """Make a new KEK current and return its id; older KEKs still unwrap until retired."""

    @abstractmethod
    def retire(self, kek_id: str) -> None:
        """Destroy an old KEK once no DEK is wrapped by it; refuses the current KEK."""


_WRAP_VERSION = 1
_WRAP_NONCE = 12
_WRAPPED_SIZE = 1 + _WRAP_NONCE + DEK_SIZE + 16
_CURRENT = "CURRENT"
_LOCAL_KEK_ID_RE = re.compile(r"local-[0-9a-f]{24}")


def _wrap_aad(kek_id: str) -> bytes:
    return b"lightbox/dek-wrap/v1\x00" + kek_id.encode("ascii")


class LocalFileKeyProvider(KeyProvider):
    """KEKs as 32 random bytes in ``<kek_id>.kek`` files (0600) in a 0700 directory.

    The file ``CURRENT`` names the KEK new wraps use. Keys are created on first use, so a
    fresh install needs no setup; production deployments use a KMS/Vault provider instead.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._keks: dict[str, bytes] = {}
        self._lock = threading.Lock()

    # -- KeyProvider ---------------------------------------------------------------

    def current_kek_id(self) -> str:
        """Read CURRENT, creating the directory, a first KEK and CURRENT if absent."""
        with self._lock:
            try:
                return self._read_current()
            except FileNotFoundError:
                pass
            self._ensure_directory()
            kek_id = self._create_kek()
            try:
                self._publish_current(kek_id, replace=False)
            except FileExistsError:
                # Another process created the first KEK at the same moment; use theirs.
                (self.directory / f"{kek_id}.kek").unlink(missing_ok=True)
                return self._read_current()
            return kek_id

    def wrap(self, dek: bytes) -> WrappedKey:
        """AES-256-GCM under the current KEK, with the KEK id as associated data."""
        if len(dek) != DEK_SIZE:
            raise ValueError("a DEK must be 32 bytes")
        kek_id = self.current_kek_id()
        nonce = secrets.token_bytes(_WRAP_NONCE)
        sealed = AESGCM(self._kek(kek_id)).encrypt(nonce, bytes(dek), _wrap_aad(kek_id))
        return WrappedKey(kek_id=kek_id, blob=bytes([_WRAP_VERSION]) + nonce + sealed)

    def unwrap(self, wrapped: WrappedKey) -> bytes:
        """Check the blob's shape, then decrypt with the KEK it names."""
        blob = wrapped.blob
        if len(blob) != _WRAPPED_SIZE or blob[0] != _WRAP_VERSION:
            raise IntegrityError("malformed wrapped key")
        kek = self._kek(wrapped.kek_id)
        nonce, sealed = blob[1 : 1 + _WRAP_NONCE], blob[1 + _WRAP_NONCE :]
        try:
            return AESGCM(kek).decrypt(nonce, sealed, _wrap_aad(wrapped.kek_id))
        except InvalidTag:
            raise IntegrityError("wrapped key failed authentication") from None

    def rotate(self) -> str:
        """Create a new KEK and point CURRENT at it; the old key file stays."""
        with self._lock:
            self._ensure_directory()
            kek_id = self._create_kek()
            self._publish_current(kek_id, replace=True)
            return kek_id

    def retire(self, kek_id: str) -> None:
        """Delete the KEK's file (unlink only: overwriting gives no guarantee on SSD or CoW)."""
        self._check_id(kek_id)
        with self._lock:
            if kek_id == self._read_current():
                raise BlobStoreError("refusing to retire the current KEK")
            try:
                (self.directory / f"{kek_id}.kek").unlink()
            except FileNotFoundError:
                raise KeyNotFound(kek_id) from None
            self._keks.pop(kek_id, None)
            _fsync_dir(self.directory)

    # -- extras --------------------------------------------------------------------

    def kek_ids(self) -> list[str]:
        """Ids of every KEK file present (current and not yet retired)."""
        if not self.directory.is_dir():
            return []
        return sorted(path.stem for path in self.directory.glob("*.kek") if _LOCAL_KEK_ID_RE.fullmatch(path.stem))

    # -- internals -----------------------------------------------------------------

    def _check_id(self, kek_id: str) -> None:
        # SECURITY: the id comes from the database and becomes a file name; only ids this
        # provider generates are accepted, so it cannot name a file outside the directory.
        if not isinstance(kek_id, str) or not _LOCAL_KEK_ID_RE.fullmatch(kek_id):
            raise KeyNotFound(f"not a local KEK id: {kek_id!r}")

    def _kek(self, kek_id: str) -> bytes:
        self._check_id(kek_id)
        cached = self._keks.get(kek_id)
        if cached is not None:
            return cached
        path = self.directory / f"{kek_id}.kek"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise KeyNotFound(kek_id) from None
        with os.fdopen(fd, "rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            # SECURITY: like ssh with private keys, refuse a KEK others could have read.
            if not stat.S_ISREG(mode) or mode & 0o077:
                raise BlobStoreError(f"KEK file {path} must be a regular file with mode 0600")
            kek = file.read(KEK_SIZE + 1)
        if len(kek) != KEK_SIZE:
            raise BlobStoreError(f"KEK file {path} does not hold a 32-byte key")
        self._keks[kek_id] = kek
        return kek

    def _read_current(self) -> str:
        kek_id = (self.directory / _CURRENT).read_text(encoding="ascii").strip()
        if not _LOCAL_KEK_ID_RE.fullmatch(kek_id):
            raise BlobStoreError(f"{self.directory / _CURRENT} does not name a KEK")
        return kek_id

    def _ensure_directory(self) -> None:
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.directory.mkdir(mode=0o700)
        except FileExistsError:
            pass

    def _create_kek(self) -> str:
        kek_id = f"local-{secrets.token_hex(12)}"
        _write_private(self.directory / f"{kek_id}.kek", secrets.token_bytes(KEK_SIZE))
        return kek_id

    def _publish_current(self, kek_id: str, *, replace: bool) -> None:
        temp = self.directory / f".{_CURRENT}.{secrets.token_hex(8)}.tmp"
        _write_private(temp, kek_id.encode("ascii") + b"\n")
        try:
            if replace:
                os.replace(temp, self.directory / _CURRENT)
            else:
                # link() fails if CURRENT exists: the first writer wins, atomically.
                os.link(temp, self.directory / _CURRENT)
        finally:
            temp.unlink(missing_ok=True)
        _fsync_dir(self.directory)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
