"""SCIM 2.0 provisioning at /scim/v2/: an organisation's identity provider creates, updates and
deactivates users and maps groups to roles, with its own bearer token and nobody else's users."""

from __future__ import annotations

import json

import pytest
import requests
from django.conf import settings
from django.core.management import call_command
from django.urls import reverse

from accounts.models import ApiToken, Membership, Role, ScimClient, ScimGroup, User
from accounts.scim.auth import issue_scim_token
from accounts.tokens import hash_token, issue_api_token
from audit.models import AuditEvent
from tests.factories import make_user, session_key_for, sign_in

SCIM = "application/scim+json"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


class Idp:
    """An identity provider's SCIM client: the Django test client plus one bearer token."""

    def __init__(self, client, token: str):
        self.client = client
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    def get(self, path, **params):
        return self.client.get(f"/scim/v2/{path}", params, **self.headers)

    def post(self, path, body):
        return self.client.post(f"/scim/v2/{path}", body, content_type=SCIM, **self.headers)

    def put(self, path, body):
        return self.client.put(f"/scim/v2/{path}", body, content_type=SCIM, **self.headers)

    def patch(self, path, *operations):
        body = {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}
        return self.client.patch(f"/scim/v2/{path}", body, content_type=SCIM, **self.headers)

    def delete(self, path):
        return self.client.delete(f"/scim/v2/{path}", **self.headers)

    def create_user(self, email="new.doctor@example.org", **extra):
        body = {
            "schemas": [USER_SCHEMA],
            "userName": email,
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "emails": [{"value": email, "primary": True, "type": "work"}],
            "externalId": "okta-00u1",
            "active": True,
            **extra,
        }
        response = self.post("Users", body)
        assert response.status_code == 201, response.content
        return response.json()

    def create_group(self, display_name="clinician", members=()):
        body = {"schemas": [GROUP_SCHEMA], "displayName": display_name, "members": [{"value": m} for m in members]}
        response = self.post("Groups", body)
        assert response.status_code == 201, response.content
        return response.json()


@pytest.fixture
def idp(client, org):
    _, token = issue_scim_token(organization=org, name="Okta")
    return Idp(client, token)


@pytest.fixture
def other_idp(other_org):
    from django.test import Client

    _, token = issue_scim_token(organization=other_org, name="Entra")
    return Idp(Client(), token)


def _events(action):
    return list(AuditEvent.objects.filter(action=action).order_by("sequence"))


# --- authentication ---------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "Bearer lbx_scim_not-a-real-token", "Basic dXNlcjpwYXNz", "Bearer "])
def test_missing_or_wrong_token_gets_401_with_a_scim_error(client, org, header):
    issue_scim_token(organization=org, name="Okta")
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    response = client.get("/scim/v2/Users", **extra)
    assert response.status_code == 401
    assert response["Content-Type"] == SCIM
    assert response["WWW-Authenticate"].startswith("Bearer")
    body = response.json()
    assert body["schemas"] == [ERROR_SCHEMA] and body["status"] == "401"
    assert _events("scim.auth_failed")[-1].outcome == "failure"


def test_a_token_works_until_revoke_scim_token_revokes_it(client, org, capsys):
    _, token = issue_scim_token(organization=org, name="Okta")
    idp = Idp(client, token)
    assert idp.get("Users").status_code == 200
    assert ScimClient.objects.get(organization=org).last_used_at is not None

    call_command("revoke_scim_token", token[:12], "--org", org.slug)
    assert "revoked 1" in capsys.readouterr().out
    response = idp.get("Users")
    assert response.status_code == 401 and response.json()["schemas"] == [ERROR_SCHEMA]
    assert _events("scim.client_revoked")[0].details == {"scim_client": ScimClient.objects.get().pk}


def test_revoke_scim_token_needs_the_right_organisation(org, other_org):
    from django.core.management.base import CommandError

    _, token = issue_scim_token(organization=org, name="Okta")
    with pytest.raises(CommandError):
        call_command("revoke_scim_token", token[:12], "--org", other_org.slug)
    assert ScimClient.objects.get().revoked_at is None


def test_a_signed_in_browser_session_is_not_a_scim_credential(client, owner):
    sign_in(client, owner)
    assert client.get("/scim/v2/Users").status_code == 401


def test_api_token_is_not_a_scim_token(client, owner):
    _, token = issue_api_token(user=owner, write=True)
    assert client.get("/scim/v2/Users", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401


def test_issue_scim_token_prints_the_token_once_and_stores_only_its_hash(org, capsys):
    call_command("issue_scim_token", "--org", org.slug, "--name", "Okta")
    token = capsys.readouterr().out.strip()
    record = ScimClient.objects.get(organization=org)
    assert token.startswith("lbx_scim_") and record.token_hash == hash_token(token)
    assert token not in json.dumps(list(ScimClient.objects.values()), default=str)
    assert token not in json.dumps(list(AuditEvent.objects.values("details")), default=str)


def test_issue_scim_token_refuses_an_unknown_organisation(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no organisation"):
        call_command("issue_scim_token", "--org", "nowhere", "--name", "Okta")


def test_unknown_scim_paths_get_a_scim_404_but_only_after_authentication(client, idp):
    for path in ("Nope", "Users/x/extra", "ResourceTypes/Nope", "Schemas/urn:nope"):
        response = idp.get(path)
        assert response.status_code == 404 and response.json()["schemas"] == [ERROR_SCHEMA], path
    assert client.get("/scim/v2/Nope").status_code == 401


def test_service_provider_config_describes_bearer_auth(idp):
    response = idp.get("ServiceProviderConfig")
    assert response.status_code == 200
    body = response.json()
    assert body["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    assert body["patch"]["supported"] is True and body["changePassword"]["supported"] is False
    assert body["meta"]["location"] == "http://testserver/scim/v2/ServiceProviderConfig"


# --- users ------------------------------------------------------------------------------------


def test_provision_user_then_get_and_filter_by_username(idp, org):
    created = idp.create_user("New.Doctor@Example.org")
    assert created["userName"] == "new.doctor@example.org"
    assert created["name"]["formatted"] == "Ada Lovelace" and created["active"] is True
    assert created["externalId"] == "okta-00u1"
    assert created["meta"]["location"] == f"http://testserver/scim/v2/Users/{created['id']}"

    user = User.objects.get(email="new.doctor@example.org")
    assert user.full_name == "Ada Lovelace" and user.scim_external_id == "okta-00u1"
    assert not user.has_usable_password()

    fetched = idp.get(f"Users/{created['id']}")
    assert fetched.status_code == 200 and fetched.json()["userName"] == "new.doctor@example.org"

    found = idp.get("Users", filter='userName eq "NEW.DOCTOR@example.org"').json()
    assert found["totalResults"] == 1 and found["Resources"][0]["id"] == created["id"]
    assert idp.get("Users", filter='userName eq "nobody@example.org"').json()["totalResults"] == 0
    assert idp.get("Users", filter='externalId eq "okta-00u1"').json()["totalResults"] == 1

    [event] = _events("scim.user_created")
    assert event.actor_id == "" and event.organization_id == org.pk
    assert event.details["scim_client"] == ScimClient.objects.get(organization=org).pk
    assert "new.doctor" not in json.dumps(event.details) and "Lovelace" not in json.dumps(event.details)


def test_listing_users_and_groups_takes_a_fixed_number_of_queries(idp, django_assert_max_num_queries):
    ids = [idp.create_user(f"user{n}@example.org")["id"] for n in range(6)]
    for name in ("clinician", "staff", "auditor"):
        idp.create_group(name, members=ids)
    with django_assert_max_num_queries(4):
        listed = idp.get("Users").json()
    assert listed["totalResults"] == 6 and all(len(r["groups"]) == 3 for r in listed["Resources"])
    with django_assert_max_num_queries(4):
        found = idp.get("Users", filter='userName sw "user"').json()
    assert found["totalResults"] == 6 and all(len(r["groups"]) == 3 for r in found["Resources"])
    with django_assert_max_num_queries(4):
        groups = idp.get("Groups").json()
    assert all(len(g["members"]) == 6 for g in groups["Resources"])


def test_duplicate_username_gets_409_uniqueness(idp):
    idp.create_user("dup@example.org")
    response = idp.post("Users", {"schemas": [USER_SCHEMA], "userName": "DUP@example.org"})
    assert response.status_code == 409 and response.json()["scimType"] == "uniqueness"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"schemas": [USER_SCHEMA]}, "userName"),
        ({"schemas": [USER_SCHEMA], "userName": "not an e-mail"}, "e-mail"),
        ({"schemas": [USER_SCHEMA], "userName": "a@example.org", "active": "maybe"}, "active"),
        ({"schemas": [USER_SCHEMA], "userName": "a@example.org", "name": "Ada"}, "name"),
        ({"schemas": [USER_SCHEMA], "userName": "a@example.org", "name": {"formatted": "x" * 201}}, "200"),
    ],
)
def test_bad_user_documents_get_400_naming_the_problem(idp, body, fragment):
    response = idp.post("Users", body)
    assert response.status_code == 400
    assert fragment in response.json()["detail"]
    assert not User.objects.filter(email="a@example.org").exists()


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff\xfe{}", b"42"])
@pytest.mark.parametrize(("method", "path"), [("post", "Users"), ("patch", "Users/x"), ("post", "Users/.search")])
def test_bodies_that_are_not_json_objects_get_400(idp, method, path, body):
    response = getattr(idp.client, method)(f"/scim/v2/{path}", body, content_type=SCIM, **idp.headers)
    assert response.status_code == 400 and response.json()["schemas"] == [ERROR_SCHEMA]


def test_malformed_filters_get_400(idp):
    assert idp.get("Users", filter='userName eq "unterminated').status_code == 400
    bad = idp.get("Users", filter='title eq "Dr"')
    assert bad.status_code == 400 and bad.json()["scimType"] == "invalidFilter"


def test_patch_updates_name_email_and_external_id(idp):
    created = idp.create_user("old@example.org")
    response = idp.patch(
        f"Users/{created['id']}",
        {"op": "Replace", "path": "name.givenName", "value": "Augusta"},
        {"op": "replace", "path": "userName", "value": "Renamed@Example.org"},
        {"op": "replace", "value": {"externalId": "okta-00u9", "urn:ietf:params:scim:schemas:core:2.0:User:title": "x"}},
    )
    assert response.status_code == 200, response.content
    assert response.json()["userName"] == "renamed@example.org"
    user = User.objects.get(scim_id=created["id"])
    assert (user.email, user.full_name, user.scim_external_id) == ("renamed@example.org", "Augusta Lovelace", "okta-00u9")
    event = _events("scim.user_updated")[-1]
    assert sorted(event.details["fields"]) == ["email", "external_id", "full_name"]


def test_put_replaces_the_user(idp):
    created = idp.create_user("put@example.org")
    response = idp.put(
        f"Users/{created['id']}",
        {"schemas": [USER_SCHEMA], "userName": "put2@example.org", "name": {"formatted": "Grace Hopper"}},
    )
    assert response.status_code == 200, response.content
    user = User.objects.get(scim_id=created["id"])
    assert (user.email, user.full_name, user.scim_external_id, user.is_active) == (
        "put2@example.org", "Grace Hopper", None, True
    )


def test_changing_username_to_a_taken_address_gets_409(idp, owner):
    created = idp.create_user("mine@example.org")
    response = idp.patch(f"Users/{created['id']}", {"op": "replace", "path": "userName", "value": owner.email})
    assert response.status_code == 409
    assert User.objects.get(scim_id=created["id"]).email == "mine@example.org"


def test_deactivation_signs_the_user_out_and_revokes_api_tokens(idp, client, org):
    from django.test import Client

    created = idp.create_user("leaver@example.org")
    idp.create_group("clinician", members=[created["id"]])
    leaver = User.objects.get(scim_id=created["id"])
    browser = sign_in(Client(), leaver)
    assert browser.get("/").status_code == 200
    token_record, token = issue_api_token(user=leaver)
    assert browser.get("/dicomweb/studies", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200

    # Azure AD's form: capitalised op, the boolean as a string.
    response = idp.patch(f"Users/{created['id']}", {"op": "Replace", "path": "active", "value": "False"})
    assert response.status_code == 200 and response.json()["active"] is False

    home = browser.get("/")
    assert home.status_code == 302 and home["Location"].startswith(reverse(settings.LOGIN_URL))
    token_record.refresh_from_db()
    assert token_record.revoked_at is not None
    assert Client().get("/dicomweb/studies", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401
    [event] = _events("scim.user_deactivated")
    assert event.details["via"] == "active_false" and event.details["api_tokens_revoked"] == 1
    assert event.actor_id == "" and event.object_id == str(leaver.pk)
    # Deactivation keeps the account, its memberships and its groups; reactivation restores access.
    assert Membership.objects.filter(user=leaver, organization=org, role=Role.CLINICIAN).exists()
    assert idp.patch(f"Users/{created['id']}", {"op": "replace", "value": {"active": True}}).status_code == 200
    assert User.objects.get(pk=leaver.pk).is_active
    assert _events("scim.user_updated")[-1].details["reactivated"] is True


def test_deactivation_ends_sessions_so_reactivation_does_not_revive_them(idp):
    from django.test import Client

    from accounts.models import UserSession

    created = idp.create_user("leaver2@example.org")
    leaver = User.objects.get(scim_id=created["id"])
    browsers = [sign_in(Client(), leaver) for _ in range(2)]
    assert all(b.get("/").status_code == 200 for b in browsers)

    idp.patch(f"Users/{created['id']}", {"op": "replace", "path": "active", "value": False})
    idp.patch(f"Users/{created['id']}", {"op": "replace", "path": "active", "value": True})

    assert User.objects.get(pk=leaver.pk).is_active
    assert {s.end_reason for s in UserSession.objects.filter(user=leaver)} == {"scim_deactivated"}
    assert all(b.get("/").status_code == 302 for b in browsers)
    assert _events("scim.user_deactivated")[0].details["sessions_ended"] == 2


def test_delete_deactivates_keeps_the_row_and_then_answers_404(idp, org):
    from django.test import Client

    created = idp.create_user("gone@example.org")
    group = idp.create_group("auditor", members=[created["id"]])
    user = User.objects.get(scim_id=created["id"])
    browser = sign_in(Client(), user)
    _, token = issue_api_token(user=user)

    assert idp.delete(f"Users/{created['id']}").status_code == 204

    user.refresh_from_db()
    assert user.is_active is False and user.email == "gone@example.org"
    assert browser.get("/").status_code == 302
    assert not ApiToken.objects.filter(user=user, revoked_at__isnull=True).exists()
    assert idp.get(f"Users/{created['id']}").status_code == 404
    assert idp.get("Users", filter='userName eq "gone@example.org"').json()["totalResults"] == 0
    assert idp.get(f"Groups/{group['id']}").json()["members"] == []
    assert not Membership.objects.filter(user=user, organization=org).exists()
    assert _events("scim.user_deactivated")[-1].details["via"] == "delete"
    # The same identity provider may provision the person again: the old account comes back.
    again = idp.create_user("gone@example.org")
    assert again["id"] != created["id"] and User.objects.get(pk=user.pk).is_active


# --- organisations never mix --------------------------------------------------------------------


def test_a_token_of_one_organisation_cannot_read_or_change_anothers_users(idp, other_idp, outsider, owner):
    theirs = other_idp.create_user("theirs@example.org")
    assert other_idp.get("Users", filter=f'userName eq "{outsider.email}"').json()["totalResults"] == 1

    assert idp.get(f"Users/{theirs['id']}").status_code == 404
    assert idp.patch(f"Users/{theirs['id']}", {"op": "replace", "path": "active", "value": False}).status_code == 404
    assert idp.put(f"Users/{theirs['id']}", {"schemas": [USER_SCHEMA], "userName": "x@example.org"}).status_code == 404
    assert idp.delete(f"Users/{theirs['id']}").status_code == 404
    for query in ('userName eq "theirs@example.org"', f'userName eq "{outsider.email}"', 'userName sw "t"'):
        assert idp.get("Users", filter=query).json()["totalResults"] == 0
    listed = {r["userName"] for r in idp.get("Users").json()["Resources"]}
    assert listed == {owner.email}
    assert User.objects.get(scim_id=theirs["id"]).is_active
    assert _events("scim.access_denied")[0].outcome == "denied"

    # Nor can it put another organisation's user into its groups.
    response = idp.post("Groups", {"schemas": [GROUP_SCHEMA], "displayName": "clinician",
                                   "members": [{"value": theirs["id"]}]})
    assert response.status_code == 400
    their_group = other_idp.create_group("staff", members=[theirs["id"]])
    assert idp.get(f"Groups/{their_group['id']}").status_code == 404
    assert idp.patch(f"Groups/{their_group['id']}", {"op": "remove", "path": "members"}).status_code == 404
    assert idp.get("Groups").json()["totalResults"] == 0


def test_existing_members_are_linked_but_multi_organisation_users_and_superusers_are_not(idp, org, other_org):
    both = make_user(email="both@example.org", organization=org)
    Membership.objects.create(user=both, organization=other_org, role=Role.CLINICIAN)
    root = make_user(email="root@example.org", organization=org)
    User.objects.filter(pk=root.pk).update(is_superuser=True)
    member = make_user(email="member@example.org", organization=org)

    found = idp.get("Users", filter='userName eq "member@example.org"').json()["Resources"]
    assert len(found) == 1 and found[0]["id"].startswith(f"{org.pk}-")
    member.refresh_from_db()
    assert member.scim_id == found[0]["id"]
    assert [e.object_id for e in _events("scim.user_linked")] == [str(member.pk)]
    assert idp.get(f"Users/{member.scim_id}").status_code == 200
    for email in ("both@example.org", "root@example.org"):
        assert idp.get("Users", filter=f'userName eq "{email}"').json()["totalResults"] == 0


# --- groups and roles -------------------------------------------------------------------------


def test_group_members_hold_the_groups_role(idp, org, settings):
    settings.LIGHTBOX_SCIM_GROUP_ROLES = {"radiologists": Role.CLINICIAN, "compliance": Role.AUDITOR}
    a = idp.create_user("a@example.org")["id"]
    b = idp.create_user("b@example.org")["id"]
    group = idp.create_group("Radiologists", members=[a])
    user_a, user_b = User.objects.get(scim_id=a), User.objects.get(scim_id=b)
    assert user_a.roles_in(org) == {Role.CLINICIAN} and user_b.roles_in(org) == set()
    assert idp.get(f"Users/{a}").json()["groups"][0]["display"] == "Radiologists"

    # Okta adds and removes members with PATCH.
    response = idp.patch(
        f"Groups/{group['id']}",
        {"op": "add", "path": "members", "value": [{"value": b}]},
        {"op": "remove", "path": f'members[value eq "{a}"]'},
    )
    assert response.status_code == 200, response.content
    assert [m["value"] for m in response.json()["members"]] == [b]
    assert User.objects.get(pk=user_a.pk).roles_in(org) == set()
    assert User.objects.get(pk=user_b.pk).roles_in(org) == {Role.CLINICIAN}
    event = _events("scim.group_updated")[-1]
    assert event.details["added"] == [user_b.pk] and event.details["removed"] == [user_a.pk]
    assert event.actor_id == "" and "scim_client" in event.details

    # Renaming to a group that maps to another role moves the members to that role (Azure's form).
    response = idp.patch(f"Groups/{group['id']}", {"op": "Replace", "value": {"id": group["id"],
                                                                                "displayName": "Compliance"}})
    assert response.status_code == 200, response.content
    assert User.objects.get(pk=user_b.pk).roles_in(org) == {Role.AUDITOR}
    assert ScimGroup.objects.get(scim_id=group["id"]).role == Role.AUDITOR

    assert idp.delete(f"Groups/{group['id']}").status_code == 204
    assert User.objects.get(pk=user_b.pk).roles_in(org) == set()
    assert idp.get(f"Groups/{group['id']}").status_code == 404
    assert [e.action for e in AuditEvent.objects.filter(action__startswith="scim.group_").order_by("sequence")] == [
        "scim.group_created", "scim.group_updated", "scim.group_updated", "scim.group_deleted"
    ]


def test_a_role_granted_by_two_groups_survives_leaving_one(idp, org, settings):
    settings.LIGHTBOX_SCIM_GROUP_ROLES = {"ct readers": Role.CLINICIAN, "mr readers": Role.CLINICIAN}
    a = idp.create_user("a@example.org")["id"]
    ct = idp.create_group("CT readers", members=[a])
    idp.create_group("MR readers", members=[a])
    assert idp.patch(f"Groups/{ct['id']}", {"op": "remove", "path": "members", "value": [{"value": a}]}).status_code == 200
    assert User.objects.get(scim_id=a).roles_in(org) == {Role.CLINICIAN}


def test_put_group_replaces_members_and_filter_by_display_name(idp, org):
    a = idp.create_user("a@example.org")["id"]
    b = idp.create_user("b@example.org")["id"]
    group = idp.create_group("staff", members=[a])
    response = idp.put(f"Groups/{group['id']}", {"schemas": [GROUP_SCHEMA], "displayName": "Staff",
                                                 "members": [{"value": b}]})
    assert response.status_code == 200, response.content
    assert User.objects.get(scim_id=a).roles_in(org) == set()
    assert User.objects.get(scim_id=b).roles_in(org) == {Role.STAFF}
    found = idp.get("Groups", filter='displayName eq "staff"').json()
    assert found["totalResults"] == 1 and found["Resources"][0]["id"] == group["id"]


@pytest.mark.parametrize(
    "body",
    [
        {"schemas": [GROUP_SCHEMA], "displayName": "Everyone"},
        {"schemas": [GROUP_SCHEMA]},
        {"schemas": [GROUP_SCHEMA], "displayName": "clinician", "members": [{"value": "no-such-id"}]},
        {"schemas": [GROUP_SCHEMA], "displayName": "clinician", "members": "all"},
    ],
)
def test_bad_groups_get_400(idp, body):
    response = idp.post("Groups", body)
    assert response.status_code == 400 and response.json()["schemas"] == [ERROR_SCHEMA]
    assert not ScimGroup.objects.exists()


def test_unmapped_group_name_says_how_to_map_it(idp):
    response = idp.post("Groups", {"schemas": [GROUP_SCHEMA], "displayName": "Everyone"})
    assert "LIGHTBOX_SCIM_GROUP_ROLES" in response.json()["detail"]


def _settings_with(tmp_path, roles: str):
    import os
    import subprocess
    import sys

    env = {**os.environ, "LIGHTBOX_SCIM_GROUP_ROLES": roles, "LIGHTBOX_DATA_DIR": str(tmp_path)}
    code = "import json, config.settings as s; print(json.dumps(s.LIGHTBOX_SCIM_GROUP_ROLES))"
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=settings.BASE_DIR, capture_output=True,
                          text=True, timeout=60)


def test_group_role_mapping_is_read_from_the_environment(tmp_path):
    done = _settings_with(tmp_path, "Radiologists=clinician, Audit Team = auditor")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"radiologists": "clinician", "audit team": "auditor"}


def test_a_group_role_mapping_naming_an_unknown_role_stops_start_up(tmp_path):
    done = _settings_with(tmp_path, "Radiologists=clinician,Surgeons=surgeon")
    assert done.returncode != 0 and "LIGHTBOX_SCIM_GROUP_ROLES" in done.stderr


def test_settings_role_list_matches_the_role_model():
    import config.settings as module

    assert set(module._SCIM_ROLES) == set(Role.values)


# --- a real HTTP client against the live server ------------------------------------------------


@pytest.mark.live
def test_provision_and_deactivate_over_real_http(live_server_url, org):
    _, token = issue_scim_token(organization=org, name="Okta")
    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {token}", "Content-Type": SCIM, "Accept": SCIM})
    base = f"{live_server_url}/scim/v2"

    created = session.post(f"{base}/Users", timeout=10, data=json.dumps(
        {"schemas": [USER_SCHEMA], "userName": "live@example.org", "name": {"formatted": "Live User"}}))
    assert created.status_code == 201, created.text
    assert created.headers["Content-Type"] == SCIM and created.headers["Cache-Control"].startswith("no-store")
    user_id = created.json()["id"]
    assert created.headers["Location"] == f"{base}/Users/{user_id}"

    browser = requests.Session()
    browser.cookies.set(settings.SESSION_COOKIE_NAME, session_key_for(User.objects.get(scim_id=user_id)))
    assert browser.get(f"{live_server_url}/", allow_redirects=False, timeout=10).status_code == 200
    patched = session.patch(f"{base}/Users/{user_id}", timeout=10, data=json.dumps(
        {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "active", "value": False}]}))
    assert patched.status_code == 200 and patched.json()["active"] is False
    signed_out = browser.get(f"{live_server_url}/", allow_redirects=False, timeout=10)
    assert signed_out.status_code == 302 and reverse(settings.LOGIN_URL) in signed_out.headers["Location"]

    refused = requests.get(f"{base}/Users", headers={"Authorization": "Bearer lbx_scim_wrong"}, timeout=10)
    assert refused.status_code == 401 and refused.json()["schemas"] == [ERROR_SCHEMA]


@pytest.mark.live
def test_a_standard_scim_client_discovers_and_provisions(live_server_url, org):
    """scim2-client validates every response against the RFC 7643 models (pydantic)."""
    import httpx2
    from scim2_client.engines.httpx2 import SyncSCIMClient
    from scim2_models import Group, GroupMember, Name, PatchOp, PatchOperation, SearchRequest
    from scim2_models import User as ScimUser

    _, token = issue_scim_token(organization=org, name="Keycloak")
    http = httpx2.Client(base_url=f"{live_server_url}/scim/v2", headers={"Authorization": f"Bearer {token}"})
    scim = SyncSCIMClient(http)
    scim.discover()
    assert {rt.endpoint for rt in scim.provider.resource_types} == {"/Users", "/Groups"}
    assert scim.provider.config.patch.supported is True

    user = scim.create(ScimUser(user_name="std@example.org", name=Name(given_name="Std", family_name="Client")))
    assert user.active is True and user.name.formatted == "Std Client"
    found = scim.query(ScimUser, query_parameters=SearchRequest(filter='userName eq "std@example.org"'))
    assert found.total_results == 1 and found.resources[0].id == user.id

    group = scim.create(Group(display_name="staff", members=[GroupMember(value=user.id)]))
    assert [m.value for m in group.members] == [user.id]
    assert User.objects.get(scim_id=user.id).roles_in(org) == {Role.STAFF}

    deactivated = scim.modify(ScimUser, user.id, PatchOp[ScimUser](
        operations=[PatchOperation(op=PatchOperation.Op.replace_, path="active", value=False)]))
    assert deactivated.active is False and not User.objects.get(scim_id=user.id).is_active

    scim.delete(ScimUser, user.id)
    with pytest.raises(Exception, match="404|not found"):
        scim.query(ScimUser, user.id)


@pytest.mark.live
def test_discovery_endpoints_pass_the_scim2_tester_conformance_checks(live_server_url, org):
    """scim2-tester's discovery and misc checks (RFC 7643 section 5-7, RFC 7644 section 4).

    Its CRUD checks fill resources with random strings, which Lightbox rightly refuses (userName
    must be an e-mail address, a group's name must map to a role); those are covered above.
    """
    import httpx2
    from scim2_client.engines.httpx2 import SyncSCIMClient
    from scim2_tester import Status, check_server

    _, token = issue_scim_token(organization=org, name="Okta")
    http = httpx2.Client(base_url=f"{live_server_url}/scim/v2", headers={"Authorization": f"Bearer {token}"})
    results = check_server(SyncSCIMClient(http), include_tags={"discovery", "misc"})
    ran = [r for r in results if r.status != Status.SKIPPED]
    assert len(ran) >= 20
    assert [(r.title, r.reason) for r in ran if r.status != Status.SUCCESS] == []
