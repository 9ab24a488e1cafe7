"""Single-use backup codes: ten per user, shown once, stored only as keyed hashes.

django-otp's static device keeps its tokens in clear text in the database; a copied database
would then hand out second factors. We keep an HMAC-SHA256 of each code instead (the codes are
random, so a fast keyed hash is enough; a slow password hash would make each sign-in try ten).
"""

from __future__ import annotations

import hmac
import secrets

from django.db import transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

CODE_COUNT = 10
# No 0/o, 1/l/i: codes get read off paper and typed on phones.
ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
CODE_LENGTH = 10


def _normalise(code: str) -> str:
    return "".join(ch for ch in str(code).lower() if ch.isalnum())


def hash_code(code: str) -> str:
    return salted_hmac("lightbox.accounts.backup-code", _normalise(code), algorithm="sha256").hexdigest()


def _new_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


@transaction.atomic
def issue_backup_codes(user) -> list[str]:
    """Replace the user's backup codes with ten fresh ones and return them (the only time)."""
    from accounts.models import BackupCodeDevice

    device, _ = BackupCodeDevice.objects.get_or_create(user=user, defaults={"name": "Backup codes"})
    device.codes.all().delete()
    codes = [_new_code() for _ in range(CODE_COUNT)]
    device.codes.bulk_create([device.codes.model(device=device, code_hash=hash_code(c)) for c in codes])
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    return codes


def remaining_codes(user) -> int:
    from accounts.models import BackupCode

    return BackupCode.objects.filter(device__user=user, used_at__isnull=True).count()


def verify_backup_code(device, token) -> bool:
    """Use up one matching code; throttled like every other django-otp device."""
    allowed, _ = device.verify_is_allowed()
    if not allowed:
        return False
    wanted = hash_code(token or "")
    with transaction.atomic():
        # select_for_update: two requests racing with the same code cannot both succeed.
        unused = list(device.codes.select_for_update().filter(used_at__isnull=True))
        match = next((c for c in unused if hmac.compare_digest(c.code_hash, wanted)), None)
        if match is not None:
            match.used_at = timezone.now()
            match.save(update_fields=["used_at"])
    if match is None:
        device.throttle_increment(commit=True)
        return False
    device.throttle_reset(commit=False)
    # BackupCodeDevice has no TimestampMixin fields (last_used_at); the used code keeps used_at.
    device.save()
    return True
