"""OpenID Connect single sign-on: provider discovery and the authentication backend.

The flow is mozilla-django-oidc's authorization-code flow with PKCE (S256) and a nonce. We add:
- discovery: the endpoints come from the issuer's `.well-known/openid-configuration`, fetched
  lazily on first use (never at import) and cached for an hour;
- strict ID-token checks: RS256 only, signature against the provider's JWKS, `iss`, `aud`
  (and `azp`), `exp`/`iat` and the nonce (mozilla-django-oidc skips audience checks);
- accounts keyed by (issuer, subject) in `ExternalIdentity`, never by e-mail alone unless
  LIGHTBOX_OIDC_LINK_BY_EMAIL says so;
- organisation and role claims mapped to `Membership` rows, re-synced on every sign-in;
- whether the provider asserted MFA (`amr` or `acr`), for the callback view to honour.

Failures raise `OIDCLoginRefused` with a short reason code, which the callback view audits and
turns into a 4xx page; they deliberately escape `django.contrib.auth.authenticate` so no
generic "failed password" event is recorded for them.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from dataclasses import dataclass

import jwt
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import SuspiciousOperation, ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings

from accounts.models import ExternalIdentity, Membership, Organization
from audit.services import record

logger = logging.getLogger("lightbox.oidc")

BACKEND_PATH = "accounts.oidc.LightboxOIDCBackend"
# OpenID Connect Discovery 1.0 section 3: metadata fields -> mozilla-django-oidc settings.
DISCOVERED_SETTINGS = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}
DISCOVERY_TTL_SECONDS = 3600
# RFC 8176 authentication method references that mean "more than a password".
MFA_AMR_VALUES = frozenset({"mfa", "otp", "hwk"})
# Clock skew tolerated between us and the provider when checking exp/iat.
CLOCK_SKEW_SECONDS = 60
SIGN_ALGORITHM = "RS256"


class OIDCLoginRefused(Exception):
    """A single sign-on attempt that must not sign anyone in.

    `reason` is a short code for the audit trail; `message` is safe to show to the user.
    """

    def __init__(self, reason: str, message: str = "Single sign-on failed. Please try again.", status: int = 400):
        super().__init__(reason)
        self.reason = reason
        self.message = message
        self.status = status


def sso_enabled() -> bool:
    return bool(getattr(settings, "LIGHTBOX_OIDC_ISSUER", None))


# --- Discovery ---------------------------------------------------------------------------------
_discovery_lock = threading.Lock()
_discovery_cache: dict[str, tuple[float, dict]] = {}


def discover(issuer: str | None = None) -> dict:
    """Return the provider's metadata document, fetched at most once an hour per issuer."""
    issuer = (issuer or settings.LIGHTBOX_OIDC_ISSUER or "").rstrip("/")
    if not issuer:
        raise OIDCLoginRefused("sso_not_configured", "Single sign-on is not configured.", 404)
    with _discovery_lock:
        cached = _discovery_cache.get(issuer)
        if cached and time.monotonic() - cached[0] < DISCOVERY_TTL_SECONDS:
            return cached[1]
    try:
        response = requests.get(
            f"{issuer}/.well-known/openid-configuration",
            timeout=settings.LIGHTBOX_OIDC_TIMEOUT_SECONDS,
            verify=import_from_settings("OIDC_VERIFY_SSL", True),
        )
        response.raise_for_status()
        metadata = response.json()
    except (requests.RequestException, ValueError):
        logger.warning("OIDC discovery failed", exc_info=True)
        raise OIDCLoginRefused(
            "provider_unreachable", "The identity provider cannot be reached. Please try again later.", 503
        ) from None
    # SECURITY: OpenID Connect Discovery 1.0 section 4.3: the document must name the issuer we
    # asked, or someone else's metadata (and keys) could be substituted.
    if not isinstance(metadata, dict) or metadata.get("issuer", "").rstrip("/") != issuer:
        raise OIDCLoginRefused("discovery_issuer_mismatch", "The identity provider is misconfigured.", 503)
    missing = [field for field in DISCOVERED_SETTINGS.values() if not metadata.get(field)]
    if missing:
        raise OIDCLoginRefused("discovery_incomplete", "The identity provider is misconfigured.", 503)
    with _discovery_lock:
        _discovery_cache[issuer] = (time.monotonic(), metadata)
    return metadata


def forget_discovery() -> None:
    """Drop cached provider metadata (tests; a provider that moved its endpoints)."""
    with _discovery_lock:
        _discovery_cache.clear()


def oidc_setting(attr: str, *default):
    """mozilla-django-oidc's settings lookup, with endpoints filled from discovery on first use.

    An endpoint set explicitly in settings wins over the discovered one.
    """
    if attr in DISCOVERED_SETTINGS and not getattr(settings, attr, None):
        return discover()[DISCOVERED_SETTINGS[attr]]
    return import_from_settings(attr, *default)


# --- Claims ------------------------------------------------------------------------------------
def _as_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [str(item) for item in value if isinstance(item, str | int)]
    return []


def mfa_assertion(claims: dict) -> str | None:
    """Return the `amr`/`acr` value by which the provider asserts MFA, or None."""
    for value in _as_list(claims.get("amr")):
        if value in MFA_AMR_VALUES:
            return value
    acr = claims.get("acr")
    if isinstance(acr, str) and acr in settings.LIGHTBOX_OIDC_MFA_ACR_VALUES:
        return acr
    return None


def _organizations_for(claims: dict) -> list[Organization]:
    claim = settings.LIGHTBOX_OIDC_ORG_CLAIM
    if not claim:
        slug = settings.LIGHTBOX_OIDC_DEFAULT_ORG
        return list(Organization.objects.filter(slug=slug)) if slug else []
    values = _as_list(claims.get(claim))
    org_map = settings.LIGHTBOX_OIDC_ORG_MAP
    slugs = [org_map[value] for value in values if value in org_map] if org_map else values
    return list(Organization.objects.filter(slug__in=slugs))


def _roles_for(claims: dict) -> set[str]:
    role_map = settings.LIGHTBOX_OIDC_ROLE_MAP
    return {role_map[value] for value in _as_list(claims.get(settings.LIGHTBOX_OIDC_ROLE_CLAIM)) if value in role_map}


def sync_memberships(user, claims: dict, *, request=None) -> dict[str, list[str]]:
    """Make the user's SSO-managed memberships exactly what the claims say.

    Only roles that LIGHTBOX_OIDC_ROLE_MAP can produce are managed; roles granted locally
    outside that set (and the key-custodian capability of a kept membership) are left alone.
    """
    if not settings.LIGHTBOX_OIDC_ROLE_CLAIM:
        return {"added": [], "removed": []}
    managed_roles = set(settings.LIGHTBOX_OIDC_ROLE_MAP.values())
    organizations = _organizations_for(claims)
    wanted = {(org.pk, role) for org in organizations for role in _roles_for(claims)}
    labels = {org.pk: org.slug for org in organizations}
    added: list[str] = []
    removed: list[str] = []
    with transaction.atomic():
        current = Membership.objects.select_related("organization").filter(user=user, role__in=managed_roles)
        have = set()
        for membership in current:
            key = (membership.organization_id, membership.role)
            if key in wanted:
                have.add(key)
            else:
                removed.append(f"{membership.organization.slug}:{membership.role}")
                membership.delete()
        for org_id, role in sorted(wanted - have):
            Membership.objects.create(user=user, organization_id=org_id, role=role)
            added.append(f"{labels[org_id]}:{role}")
    added.sort()
    removed.sort()
    if added or removed:
        record(
            action="auth.sso_roles_synced",
            actor=user,
            request=request,
            object_type="user",
            object_id=user.pk,
            details={"added": added, "removed": removed},
        )
    return {"added": added, "removed": removed}


@dataclass(frozen=True)
class SignInResult:
    """What the callback view needs to know about a successful SSO sign-in."""

    issuer: str
    subject: str
    mfa: str | None
    auth_time: float | None
    created: bool


# --- Backend -----------------------------------------------------------------------------------
class LightboxOIDCBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's backend with lazy discovery, strict token checks and our account rules."""

    get_settings = staticmethod(oidc_setting)
    OIDC_RP_SIGN_ALGO = SIGN_ALGORITHM
    OIDC_RP_IDP_SIGN_KEY = None

    def __init__(self, *args, **kwargs):
        # The parent reads every endpoint here. Django instantiates backends for every password
        # sign-in and for every request of an SSO session (get_user), so resolving endpoints
        # (a network call) is left to the moment a callback actually needs them.
        self.UserModel = get_user_model()

    OIDC_OP_TOKEN_ENDPOINT = property(lambda self: oidc_setting("OIDC_OP_TOKEN_ENDPOINT"))
    OIDC_OP_USER_ENDPOINT = property(lambda self: oidc_setting("OIDC_OP_USER_ENDPOINT"))
    OIDC_OP_JWKS_ENDPOINT = property(lambda self: oidc_setting("OIDC_OP_JWKS_ENDPOINT"))
    OIDC_RP_CLIENT_ID = property(lambda self: settings.OIDC_RP_CLIENT_ID)
    OIDC_RP_CLIENT_SECRET = property(lambda self: settings.OIDC_RP_CLIENT_SECRET)

    def authenticate(self, request, **kwargs):
        # Only the callback view passes `nonce`; password sign-ins never reach the provider.
        if request is None or "nonce" not in kwargs or "username" in kwargs or not sso_enabled():
            return None
        nonce = kwargs["nonce"]
        code_verifier = kwargs.get("code_verifier")
        code, state = request.GET.get("code"), request.GET.get("state")
        if not code or not state:
            return None
        self.request = request
        if not nonce or not code_verifier:
            # SECURITY: both are generated by our own request view; a flow without them was not ours.
            raise OIDCLoginRefused("missing_nonce_or_verifier")
        token_info = self._exchange_code(request, code, code_verifier)
        id_token, access_token = token_info.get("id_token"), token_info.get("access_token")
        if not isinstance(id_token, str) or not isinstance(access_token, str):
            raise OIDCLoginRefused("no_id_token")
        claims = self.verify_token(id_token, nonce=nonce)
        userinfo = self._userinfo(access_token, id_token, claims)
        # SECURITY: OpenID Connect Core 1.0 section 5.3.2: userinfo must describe the same subject.
        if str(userinfo.get("sub", "")) != str(claims["sub"]):
            raise OIDCLoginRefused("userinfo_subject_mismatch")
        # Identity and assurance claims (iss, sub, amr, acr) come only from the signed ID token.
        merged = {**userinfo, **claims}
        user, created = self._user_for(merged)
        sync_memberships(user, merged, request=request)
        auth_time = claims.get("auth_time")
        request.lightbox_oidc = SignInResult(
            issuer=claims["iss"],
            subject=str(claims["sub"]),
            mfa=mfa_assertion(claims),
            auth_time=float(auth_time) if isinstance(auth_time, int | float) else None,
            created=created,
        )
        return user

    def _exchange_code(self, request, code: str, code_verifier: str) -> dict:
        from django.urls import reverse
        from mozilla_django_oidc.utils import absolutify

        payload = {
            "client_id": self.OIDC_RP_CLIENT_ID,
            "client_secret": self.OIDC_RP_CLIENT_SECRET,
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": absolutify(request, reverse(settings.OIDC_AUTHENTICATION_CALLBACK_URL)),
            "code_verifier": code_verifier,
        }
        try:
            info = self.get_token(payload)
        except requests.HTTPError as exc:
            status = getattr(exc.response, "status_code", None)
            logger.warning("OIDC token request refused by the provider (HTTP %s)", status)
            raise OIDCLoginRefused("token_exchange_refused") from None
        except (requests.RequestException, ValueError):
            logger.warning("OIDC token request failed", exc_info=True)
            raise OIDCLoginRefused(
                "provider_unreachable", "The identity provider cannot be reached. Please try again later.", 503
            ) from None
        if not isinstance(info, dict):
            raise OIDCLoginRefused("token_exchange_refused")
        return info

    def _userinfo(self, access_token: str, id_token: str, claims: dict) -> dict:
        try:
            info = self.get_userinfo(access_token, id_token, claims)
        except requests.HTTPError:
            raise OIDCLoginRefused("userinfo_refused") from None
        except (requests.RequestException, ValueError):
            raise OIDCLoginRefused(
                "provider_unreachable", "The identity provider cannot be reached. Please try again later.", 503
            ) from None
        if not isinstance(info, dict):
            raise OIDCLoginRefused("userinfo_refused")
        return info

    def verify_token(self, token, **kwargs):
        """Verify an ID token: signature (RS256, provider JWKS), iss, aud/azp, exp/iat, nonce.

        mozilla-django-oidc also calls this, without `nonce`, for a signed (application/jwt)
        userinfo response, which carries iss/aud but no nonce or lifetime (OIDC Core 5.3.2).
        """
        is_id_token = "nonce" in kwargs
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise OIDCLoginRefused("malformed_id_token") from None
        # SECURITY: never let the token choose its algorithm (alg=none, HS256 with the public key).
        if header.get("alg") != SIGN_ALGORITHM:
            raise OIDCLoginRefused("unexpected_algorithm")
        try:
            key = self.retrieve_matching_jwk(token)
        except (SuspiciousOperation, KeyError, jwt.PyJWKError):
            raise OIDCLoginRefused("unknown_signing_key") from None
        except (requests.RequestException, ValueError):
            raise OIDCLoginRefused(
                "provider_unreachable", "The identity provider cannot be reached. Please try again later.", 503
            ) from None
        issuer = settings.LIGHTBOX_OIDC_ISSUER.rstrip("/")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[SIGN_ALGORITHM],
                audience=self.OIDC_RP_CLIENT_ID,
                issuer=issuer,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["iss", "sub", "aud", "exp", "iat"] if is_id_token else ["iss", "sub", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise OIDCLoginRefused("id_token_expired", "The sign-in took too long. Please try again.") from None
        except jwt.ImmatureSignatureError:
            raise OIDCLoginRefused("id_token_not_yet_valid") from None
        except jwt.InvalidAudienceError:
            raise OIDCLoginRefused("wrong_audience") from None
        except jwt.InvalidIssuerError:
            raise OIDCLoginRefused("wrong_issuer") from None
        except jwt.InvalidSignatureError:
            raise OIDCLoginRefused("bad_signature") from None
        except jwt.InvalidTokenError:
            raise OIDCLoginRefused("invalid_id_token") from None
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        # SECURITY: OpenID Connect Core 1.0 section 3.1.3.7 (items 4-5): with several audiences
        # the token must have been issued to us (azp).
        if len(audiences) > 1 and claims.get("azp") != self.OIDC_RP_CLIENT_ID:
            raise OIDCLoginRefused("wrong_audience")
        if not is_id_token:
            return claims
        # SECURITY: the nonce binds the token to the sign-in this browser started (replay defence).
        expected = kwargs.get("nonce")
        received = claims.get("nonce")
        if not expected or not isinstance(received, str) or not hmac.compare_digest(received, expected):
            raise OIDCLoginRefused("nonce_mismatch")
        return claims

    def _user_for(self, claims: dict):
        issuer, subject = str(claims["iss"]).rstrip("/"), str(claims["sub"])
        # OpenID Connect Core 1.0 section 2: sub is at most 255 ASCII characters.
        if not subject or len(subject) > 255 or len(issuer) > 300:
            raise OIDCLoginRefused("invalid_subject")
        email = claims.get("email")
        email = email.strip().lower() if isinstance(email, str) else ""
        if email:
            try:
                validate_email(email)
            except ValidationError:
                raise OIDCLoginRefused(
                    "invalid_email", "The identity provider sent an invalid e-mail address.", 403
                ) from None
        try:
            return self._find_or_create_user(claims, issuer, subject, email)
        except IntegrityError:
            # Two first sign-ins of one account raced; the other one won. Harmless to retry.
            raise OIDCLoginRefused("concurrent_sign_in", "Please try signing in again.", 409) from None

    def _find_or_create_user(self, claims: dict, issuer: str, subject: str, email: str):
        created = False
        with transaction.atomic():
            identity = (
                ExternalIdentity.objects.select_for_update()
                .select_related("user")
                .filter(issuer=issuer, subject=subject)
                .first()
            )
            if identity is not None:
                user = identity.user
            else:
                user = None
                # SECURITY: an e-mail claim alone never opens an existing account (an identity
                # provider that lets users set their own address would otherwise hand them any
                # account). Only with LIGHTBOX_OIDC_LINK_BY_EMAIL and a verified address.
                if settings.LIGHTBOX_OIDC_LINK_BY_EMAIL and email and claims.get("email_verified") is True:
                    user = self.UserModel.objects.filter(email__iexact=email).first()
                if user is None:
                    if not settings.LIGHTBOX_OIDC_CREATE_USERS:
                        raise OIDCLoginRefused(
                            "no_account", "There is no Lightbox account for this sign-in. Ask an administrator.", 403
                        )
                    if not email:
                        raise OIDCLoginRefused(
                            "no_email", "The identity provider did not share an e-mail address.", 403
                        )
                    if self.UserModel.objects.filter(email__iexact=email).exists():
                        raise OIDCLoginRefused(
                            "email_in_use",
                            "A Lightbox account with this e-mail address exists but is not linked to this sign-in. "
                            "Ask an administrator.",
                            403,
                        )
                    # No usable password: this account signs in through the provider only.
                    user = self.UserModel.objects.create_user(email=email, password=None)
                    created = True
                identity = ExternalIdentity.objects.create(user=user, issuer=issuer, subject=subject)
            if not user.is_active:
                raise OIDCLoginRefused("inactive_account", "This account is disabled.", 403)
            name = claims.get("name")
            if isinstance(name, str) and name.strip() and name.strip()[:200] != user.full_name:
                user.full_name = name.strip()[:200]
                user.save(update_fields=["full_name"])
            identity.last_login_at = timezone.now()
            identity.save(update_fields=["last_login_at"])
        if created:
            record(
                action="auth.sso_user_created",
                actor=user,
                request=self.request,
                object_type="user",
                object_id=user.pk,
                details={"issuer": issuer},
            )
        return user, created
