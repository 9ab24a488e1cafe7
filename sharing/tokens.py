"""Random link tokens, access codes and their hashes (Django-free).

Link tokens, session keys and download links carry 256 bits and are looked up by their SHA-256
(a fast hash is right for uniformly random secrets: there is nothing to brute-force). Access
codes and e-mailed codes are short, so they are hashed with Django's salted password hasher and
guessing is stopped by the lockout and the per-address rate limit.
"""

from __future__ import annotations

import hashlib
import secrets

# No 0/O, 1/I/L, 2/Z, 5/S, 8/B: codes are read aloud and typed on phones.
CODE_ALPHABET = "34679ACDEFGHJKMNPQRTUVWXY"
ACCESS_CODE_LENGTH = 10
EMAIL_CODE_LENGTH = 8
TOKEN_BYTES = 32  # 256 bits


def new_token() -> str:
    """A URL-safe random token of 256 bits (43 characters)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    """The SHA-256 hex digest of a token, the only form in which tokens are stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_code(length: int = ACCESS_CODE_LENGTH) -> str:
    """A code of `length` characters from the unambiguous alphabet."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))


def normalise_code(value: str) -> str:
    """Upper-case, spaces and dashes removed, so "abcd-efgh 23" matches "ABCDEFGH23"."""
    return "".join(ch for ch in (value or "").upper() if ch not in " -\t")


def format_code(code: str) -> str:
    """Group a code for reading aloud: ABCDE-FGHJK."""
    return "-".join(code[i : i + 5] for i in range(0, len(code), 5))
