"""Single sign-on configuration and claim rules that need no identity provider."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from accounts.models import Role, User
from accounts.oidc import forget_discovery
from tests.conftest import free_port
from tests.factories import PASSWORD, make_user

MFA_ACR = "urn:example:loa:mfa"


def _clean_environment(tmp_path) -> dict[str, str]:
    """This process's environment for a settings import, without any SSO or production values."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("LIGHTBOX_OIDC_") and name not in ("LIGHTBOX_ENV", "DJANGO_SETTINGS_MODULE")
    }
    return {**environment, "LIGHTBOX_ENV": "development", "LIGHTBOX_DATA_DIR": str(tmp_path)}


@pytest.mark.django_db
def test_single_sign_on_is_off_without_an_issuer(client, settings):
    settings.LIGHTBOX_OIDC_ISSUER = None

    assert client.get("/oidc/authenticate/").status_code == 404
    assert client.get("/oidc/callback/?code=x&state=y").status_code == 404
    page = client.get("/accounts/sign-in/")
    assert page.status_code == 200
    assert b"/oidc/authenticate/" not in page.content


@pytest.mark.django_db
def test_unreachable_provider_gives_503_and_password_sign_in_still_works(client, settings):
    forget_discovery()
    settings.LIGHTBOX_OIDC_ISSUER = f"http://127.0.0.1:{free_port()}/o"
    settings.OIDC_RP_CLIENT_ID = "lightbox"
    settings.OIDC_RP_CLIENT_SECRET = "s" * 32
    settings.AUTHENTICATION_BACKENDS = [*settings.AUTHENTICATION_BACKENDS, "accounts.oidc.LightboxOIDCBackend"]
    make_user(email="local@example.org")

    start = client.get("/oidc/authenticate/")
    assert start.status_code == 503
    assert b"cannot be reached" in start.content

    signed_in = client.post("/accounts/sign-in/", {"username": "local@example.org", "password": PASSWORD})
    assert signed_in.status_code == 302
    assert client.session["_auth_user_id"] == str(User.objects.get(email="local@example.org").pk)
    forget_discovery()


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"amr": ["pwd", "mfa"]}, "mfa"),
        ({"amr": ["otp"]}, "otp"),
        ({"amr": ["hwk", "pwd"]}, "hwk"),
        ({"amr": "mfa"}, "mfa"),
        ({"amr": ["pwd"]}, None),
        ({"amr": ["pwd", "sms"]}, None),
        ({"amr": {"mfa": True}}, None),
        ({"acr": MFA_ACR}, f"{MFA_ACR}"),
        ({"acr": "urn:example:loa:password"}, None),
        ({"acr": [MFA_ACR]}, None),
        ({}, None),
    ],
)
def test_mfa_assertion_from_amr_and_acr(settings, claims, expected):
    from accounts.oidc import mfa_assertion

    settings.LIGHTBOX_OIDC_MFA_ACR_VALUES = [MFA_ACR]

    assert mfa_assertion(claims) == expected


def test_role_names_in_settings_match_the_role_model():
    from config import settings as project_settings

    assert set(project_settings._OIDC_ROLES) == set(Role.values)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LIGHTBOX_OIDC_ROLE_MAP": "radiologists=superuser"}, "LIGHTBOX_OIDC_ROLE_MAP entries"),
        ({"LIGHTBOX_OIDC_ISSUER": "https://idp.example.org"}, "LIGHTBOX_OIDC_CLIENT_ID must be set"),
        (
            {"LIGHTBOX_OIDC_ISSUER": "https://idp.example.org", "LIGHTBOX_OIDC_CLIENT_ID": "lightbox"},
            "LIGHTBOX_OIDC_CLIENT_SECRET is not set",
        ),
        ({"LIGHTBOX_OIDC_SCOPES": "email profile"}, "must include 'openid'"),
    ],
)
def test_bad_sso_configuration_stops_start_up(env, message, tmp_path):
    environment = {**_clean_environment(tmp_path), **env}
    result = subprocess.run(
        [sys.executable, "-c", "import config.settings"], env=environment, capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert message in result.stderr


def test_configured_sso_adds_the_backend(tmp_path):
    environment = {
        **_clean_environment(tmp_path),
        "LIGHTBOX_OIDC_ISSUER": "https://idp.example.org/",
        "LIGHTBOX_OIDC_CLIENT_ID": "lightbox",
        "LIGHTBOX_OIDC_CLIENT_SECRET_FILE": str(tmp_path / "secret"),
        "LIGHTBOX_OIDC_ROLE_MAP": "radiologists=clinician, auditors=auditor",
        "LIGHTBOX_OIDC_SCOPES": "openid,email groups",
    }
    (tmp_path / "secret").write_text("a-client-secret-from-a-file\n")
    code = (
        "import config.settings as s; print(s.AUTHENTICATION_BACKENDS[-1], s.OIDC_RP_CLIENT_SECRET, "
        "s.LIGHTBOX_OIDC_ISSUER, s.LIGHTBOX_OIDC_ROLE_MAP, repr(s.OIDC_RP_SCOPES))"
    )
    result = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == (
        "accounts.oidc.LightboxOIDCBackend a-client-secret-from-a-file https://idp.example.org "
        "{'radiologists': 'clinician', 'auditors': 'auditor'} 'openid email groups'"
    )


@pytest.mark.django_db
def test_without_a_role_claim_memberships_are_left_alone(settings, org):
    from accounts.oidc import sync_memberships

    settings.LIGHTBOX_OIDC_ROLE_CLAIM = None
    user = make_user(organization=org, role=Role.CLINICIAN)

    assert sync_memberships(user, {"groups": ["auditors"]}) == {"added": [], "removed": []}
    assert set(user.memberships.values_list("role", flat=True)) == {Role.CLINICIAN}


@pytest.mark.django_db
def test_default_organisation_is_used_without_an_organisation_claim(settings, org, other_org):
    from accounts.oidc import sync_memberships

    settings.LIGHTBOX_OIDC_ROLE_CLAIM = "groups"
    settings.LIGHTBOX_OIDC_ROLE_MAP = {"auditors": Role.AUDITOR}
    settings.LIGHTBOX_OIDC_ORG_CLAIM = None
    settings.LIGHTBOX_OIDC_DEFAULT_ORG = other_org.slug
    user = make_user()

    result = sync_memberships(user, {"groups": ["auditors", "unmapped"], "org": org.slug})

    assert result == {"added": [f"{other_org.slug}:auditor"], "removed": []}
    assert set(user.memberships.values_list("organization", "role")) == {(other_org.pk, Role.AUDITOR)}


@pytest.mark.django_db
def test_organisation_claim_values_are_slugs_without_a_map(settings, org, other_org):
    from accounts.oidc import sync_memberships

    settings.LIGHTBOX_OIDC_ROLE_CLAIM = "roles"
    settings.LIGHTBOX_OIDC_ROLE_MAP = {"doctor": Role.CLINICIAN}
    settings.LIGHTBOX_OIDC_ORG_CLAIM = "orgs"
    settings.LIGHTBOX_OIDC_ORG_MAP = {}
    user = make_user()

    sync_memberships(user, {"roles": "doctor", "orgs": [org.slug, other_org.slug, "no-such-org"]})

    assert set(user.memberships.values_list("organization", "role")) == {
        (org.pk, Role.CLINICIAN),
        (other_org.pk, Role.CLINICIAN),
    }
