"""Users, organisations (tenants) and memberships carrying a role."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.utils import timezone
from django_otp.models import Device, ThrottlingMixin


class Role(models.TextChoices):
    CLINICIAN = "clinician", "Clinician"
    PATIENT = "patient", "Patient"
    STAFF = "staff", "Staff (share manager)"
    AUDITOR = "auditor", "Auditor"
    ADMIN = "admin", "Administrator"


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create(self, email: str, password: str | None, **extra):
        if not email:
            raise ValueError("An e-mail address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra):
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra):
        extra.update(is_staff=True, is_superuser=True)
        return self._create(email, password, **extra)

    def get_by_natural_key(self, username):
        # E-mail addresses are stored lower-case, so sign-in is case-insensitive.
        return self.get(**{self.model.USERNAME_FIELD: (username or "").lower()})


class User(AbstractBaseUser, PermissionsMixin):
    """A person who signs in with an e-mail address and a password plus a second factor."""

    email = models.EmailField(unique=True)
    full_name = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False, help_text="May sign in to the admin site.")
    date_joined = models.DateTimeField(default=timezone.now)
    # SCIM 2.0 provisioning: the id we hand the identity provider and the id it knows us by.
    # NULL, not "", for users never provisioned: unique=True must allow many of them.
    scim_id = models.CharField(max_length=64, unique=True, null=True, blank=True, editable=False)  # noqa: DJ001
    scim_external_id = models.CharField(max_length=254, null=True, blank=True, db_index=True)  # noqa: DJ001

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email

    def get_full_name(self) -> str:
        return self.full_name or self.email

    def get_short_name(self) -> str:
        return self.full_name.split(" ")[0] if self.full_name else self.email

    def roles_in(self, organization) -> set[str]:
        """Return the roles this user holds in `organization` (by object or id)."""
        org_id = getattr(organization, "pk", organization)
        return {m.role for m in self.memberships.all() if m.organization_id == org_id}


class Organization(models.Model):
    """A tenant: a hospital or imaging centre. Data never crosses between organisations."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(unique=True)
    time_zone = models.CharField(
        max_length=64, default="UTC", help_text="IANA zone used for access-hour windows, e.g. Europe/Berlin."
    )
    watermark_internal_users = models.BooleanField(
        default=False, help_text="Burn the viewer's identity into every frame for signed-in staff too (always on for shares)."
    )
    max_share_days = models.PositiveSmallIntegerField(default=30, help_text="Longest expiry a share link may have.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class MembershipQuerySet(models.QuerySet):
    def active(self):
        return self.filter(user__is_active=True)


class Membership(models.Model):
    """A user's role in one organisation. Roles are separate duties, not a ladder."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices)
    is_key_custodian = models.BooleanField(
        default=False, help_text="May rotate encryption keys. Separate from every other role."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = MembershipQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "organization", "role"], name="unique_role_per_org"),
        ]

    def __str__(self) -> str:
        return f"{self.user} — {self.get_role_display()} at {self.organization}"


class ApiTokenQuerySet(models.QuerySet):
    def usable(self):
        return self.filter(revoked_at__isnull=True, expires_at__gt=timezone.now(), user__is_active=True)


class ApiToken(models.Model):
    """A bearer token for API clients (DICOMweb). Only its SHA-256 is stored."""

    class Scope(models.TextChoices):
        READ = "read", "Read"
        READ_WRITE = "read_write", "Read and write"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=12, editable=False, help_text="First characters, to recognise a token.")
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.READ)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @property
    def can_write(self) -> bool:
        return self.scope == self.Scope.READ_WRITE


class AccessRule(models.Model):
    """An attribute-based restriction on where and when members of an organisation may work.

    Every rule that matches the member's role (or every role, when blank) must pass: the client
    address inside one of the CIDR blocks (when any are listed) and the local time inside the
    window (when one is set; a window may wrap past midnight).
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="access_rules")
    role = models.CharField(max_length=20, choices=Role.choices, blank=True, help_text="Blank: every role.")
    allowed_networks = models.TextField(
        blank=True, help_text="One CIDR block per line (e.g. 10.0.0.0/8). Blank: any address."
    )
    hours_start = models.TimeField(null=True, blank=True)
    hours_end = models.TimeField(null=True, blank=True)
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Access rule for {self.role or 'every role'} at {self.organization}"


class ExternalIdentity(models.Model):
    """A user's account at an OpenID Connect provider (issuer + subject, never the e-mail)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="external_identities")
    issuer = models.CharField(max_length=300)
    subject = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="unique_external_identity")]

    def __str__(self) -> str:
        return f"{self.user} at {self.issuer}"


class UserSession(models.Model):
    """One signed-in browser session, so users can see and end theirs ("sign out everywhere").

    # SECURITY: only the SHA-256 of the session key is kept; middleware ends any request whose
    # record is marked ended, whatever session backend holds the session itself.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="browser_sessions")
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=40, blank=True)

    class Meta:
        ordering = ["-last_seen_at"]

    def __str__(self) -> str:
        return f"Session of {self.user} since {self.created_at:%Y-%m-%d %H:%M}"


class ScimClient(models.Model):
    """An identity provider allowed to provision one organisation's users over SCIM 2.0."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="scim_clients")
    name = models.CharField(max_length=100)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=12, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"SCIM client {self.name} ({self.organization})"


class ScimGroup(models.Model):
    """A SCIM group; its members hold `role` in `organization` (groups map to roles)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="scim_groups")
    display_name = models.CharField(max_length=200)
    role = models.CharField(max_length=20, choices=Role.choices)
    scim_id = models.CharField(max_length=64, unique=True, editable=False)
    scim_external_id = models.CharField(max_length=254, null=True, blank=True)  # noqa: DJ001 (SCIM null)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="scim_groups")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.display_name


class BackupCodeDevice(ThrottlingMixin, Device):
    """Ten single-use backup codes. django-otp's static device keeps codes in clear; we hash them."""

    def verify_token(self, token) -> bool:
        from accounts.backup_codes import verify_backup_code

        return verify_backup_code(self, token)

    def get_throttle_factor(self) -> int:
        return getattr(settings, "OTP_BACKUP_CODE_THROTTLE_FACTOR", 1)


class BackupCode(models.Model):
    device = models.ForeignKey(BackupCodeDevice, on_delete=models.CASCADE, related_name="codes")
    code_hash = models.CharField(max_length=128)
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Backup code {self.pk} ({'used' if self.used_at else 'unused'})"
