"""The authorization matrix: every URL x every persona x own/other organisation.

Every URL pattern of the project must be classified below (a new URL without a row fails this
test), and for each persona the response must be exactly the expected allow or deny. The test
prints the matrix and counts unexpected allows (must be 0) and unexpected denies (must be 0).

Personas: one member per role of organisation A (the patient is linked to the owner of A's
study), a clinician of organisation B ("outsider"), a password-only session ("unverified"),
and no session ("anonymous"). Objects: a study in A and a study in B.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from accounts.demo import _admin_group
from accounts.models import Role
from archive import synthetic
from archive.models import Instance, PatientLink, Study
from archive.services import ingest
from archive.synthetic import SyntheticPatient
from tests import factories
from tests.archive.test_stow import STOW_TYPE, multipart

# Transactional: the rendered and STOW views run their queries on other threads (async views),
# which must see the committed test data, as they do in production.
pytestmark = pytest.mark.django_db(transaction=True)

ROLES = [Role.CLINICIAN, Role.PATIENT, Role.STAFF, Role.AUDITOR, Role.ADMIN]
PERSONAS = [str(r) for r in ROLES] + ["outsider", "unverified", "anonymous"]
READERS = {"clinician", "patient", "staff"}  # who may see organisation A's study (patient: their own)
SHARERS = {"clinician", "patient", "staff"}
IMPORTERS = {"staff"}
VERIFIED = {"clinician", "patient", "staff", "auditor", "admin", "outsider"}
PATIENTS = {"patient"}
NOBODY: set[str] = set()


@dataclass
class World:
    own: Instance
    other: Instance
    clients: dict[str, Client]
    users: dict


def _store(org, patient_id: str) -> Instance:
    ds = synthetic.ct_study(patient=SyntheticPatient("DOE^JANE", patient_id, "19800101", "F"), slices=1, size=16)[0]
    result = ingest(stream=io.BytesIO(synthetic.to_bytes(ds)), organization=org, source="test")
    assert result.ok, result.reason
    return Instance.objects.select_related("series__study").get(sop_instance_uid=result.sop_instance_uid)


@pytest.fixture
def world(org, other_org) -> World:
    own, other = _store(org, "P-A"), _store(other_org, "P-B")
    users, clients = {}, {}
    for role in ROLES:
        users[str(role)] = factories.make_user(
            organization=org,
            role=role,
            is_staff=role in (Role.STAFF, Role.AUDITOR, Role.ADMIN),
            is_key_custodian=role == Role.ADMIN,
        )
    users["admin"].groups.add(_admin_group())
    PatientLink.objects.create(user=users["patient"], patient=own.series.study.patient, method="staff")
    users["outsider"] = factories.make_user(organization=other_org, role=Role.CLINICIAN)
    users["unverified"] = factories.make_user(organization=org, role=Role.CLINICIAN)
    for name, user in users.items():
        client = Client()
        if name == "unverified":
            client.force_login(user)
        else:
            factories.sign_in(client, user)
        clients[name] = client
    clients["anonymous"] = Client()
    return World(own=own, other=other, clients=clients, users=users)


# --- how to call each URL, and who may ------------------------------------------------------


def _uids(instance: Instance) -> dict[str, str]:
    return {
        "study": instance.series.study.study_instance_uid,
        "series": instance.series.series_instance_uid,
        "instance": instance.sop_instance_uid,
    }


def _study_path(template: str):
    def build(world: World, target: Instance) -> tuple[str, str, dict]:
        u = _uids(target)
        path = template.format(**u, study_uid=u["study"], series_uid=u["series"])
        return "GET", path, {}

    return build


def _post_json(path: str, body):
    def build(world: World, target: Instance) -> tuple[str, str, dict]:
        data = body(target) if callable(body) else body
        return "POST", path, {"data": json.dumps(data), "content_type": "application/json"}

    return build


def _stow(world: World, target: Instance) -> tuple[str, str, dict]:
    ds = synthetic.ct_study(slices=1, size=16, seed=99)[0]
    return "POST", "/dicomweb/studies", {"data": multipart(synthetic.to_bytes(ds)), "content_type": STOW_TYPE}


def _get(path: str):
    return lambda world, target: ("GET", path, {})


I = "dicomweb/studies/{study}/series/{series}/instances/{instance}"  # noqa: E741

# name -> (request builder, personas allowed on organisation A's objects, object-scoped?)
# Object-scoped rows are also called with organisation B's objects, where nobody is allowed.
MATRIX: dict[str, tuple] = {
    # the study list is filtered, checked below by content
    "viewer:viewer": (_study_path("/viewer/{study_uid}/"), READERS, True),
    "viewer:thumbnail": (_study_path("/viewer/thumb/{study_uid}/{series_uid}/"), READERS, True),
    "viewer:ticket": (_post_json("/viewer/ticket/", lambda t: {"study": _uids(t)["study"]}), READERS, True),
    "rendered:study-rendered": (_study_path("/dicomweb/studies/{study}/rendered"), READERS, True),
    "rendered:study-thumbnail": (_study_path("/dicomweb/studies/{study}/thumbnail"), READERS, True),
    "rendered:series-rendered": (_study_path("/dicomweb/studies/{study}/series/{series}/rendered"), READERS, True),
    "rendered:series-thumbnail": (_study_path("/dicomweb/studies/{study}/series/{series}/thumbnail"), READERS, True),
    "rendered:instance-rendered": (_study_path("/" + I + "/rendered"), READERS, True),
    "rendered:instance-thumbnail": (_study_path("/" + I + "/thumbnail"), READERS, True),
    "rendered:frames-rendered": (_study_path("/" + I + "/frames/1/rendered"), READERS, True),
    "dicomweb:study": (_study_path("/dicomweb/studies/{study}"), READERS, True),
    "dicomweb:qido-study-series": (_study_path("/dicomweb/studies/{study}/series"), READERS, True),
    "dicomweb:qido-series-instances": (_study_path("/dicomweb/studies/{study}/series/{series}/instances"), READERS, True),
    "dicomweb:qido-study-instances": (_study_path("/dicomweb/studies/{study}/instances"), READERS, True),
    "dicomweb:wado-study-metadata": (_study_path("/dicomweb/studies/{study}/metadata"), READERS, True),
    "dicomweb:wado-series": (_study_path("/dicomweb/studies/{study}/series/{series}"), READERS, True),
    "dicomweb:wado-series-metadata": (_study_path("/dicomweb/studies/{study}/series/{series}/metadata"), READERS, True),
    "dicomweb:wado-instance": (_study_path("/" + I), READERS, True),
    "dicomweb:wado-instance-metadata": (_study_path("/" + I + "/metadata"), READERS, True),
    "dicomweb:wado-frames": (_study_path("/" + I + "/frames/1"), READERS, True),
    "dicomweb:wado-bulkdata": (_study_path("/" + I + "/bulkdata/7FE00010"), READERS, True),
    "sharing:new": (_study_path("/share/new/{study_uid}/"), SHARERS, True),
    # the caller's own account pages: any signed-in user with a second factor
    "accounts:security": (_get("/accounts/security/"), VERIFIED, False),
    "accounts:passkeys": (_get("/accounts/passkeys/"), VERIFIED, False),
    "accounts:sessions": (_get("/accounts/sessions/"), VERIFIED, False),
    "accounts:link_patient": (_get("/accounts/link-patient/"), PATIENTS, False),
}

# Rows whose answer does not depend on who is asking in the way above, with the reason.
CLASSIFIED_ELSEWHERE = {
    "home": "the study list: checked by content below (only visible studies listed)",
    "dicomweb:studies": "QIDO search (GET) is checked by content below; STOW (POST) below",
    "dicomweb:qido-series": "search: checked by content below",
    "dicomweb:qido-instances": "search: checked by content below",
    "healthz": "public liveness probe, no data",
    "accounts:login": "public sign-in form",
    "accounts:logout": "POST only; ends the caller's own session",
    "accounts:verify": "second-factor form for the caller's own session (tests/accounts/test_second_factor*)",
    "accounts:enrol": "enrolment for the caller's own account (tests/accounts/test_second_factor*)",
    "accounts:backup_codes_new": "caller's own codes, step-up (tests/accounts/test_step_up.py)",
    "accounts:remove_device": "caller's own devices, step-up (tests/accounts/test_second_factor*)",
    "accounts:passkey_remove": "caller's own passkeys by id; others' ids 404 (tests/accounts/test_passkeys*)",
    "accounts:session_end": "caller's own sessions by id; others' ids 404 (tests/accounts/test_sessions*)",
    "accounts:sign_out_everywhere": "caller's own sessions (tests/accounts/test_sessions*)",
    "accounts:session_keepalive": "caller's own session (tests/accounts/test_sessions*)",
    "accounts:session_status": "caller's own session (tests/accounts/test_sessions*)",
    "oidc:authenticate": "starts SSO at the identity provider (tests/accounts/test_oidc*)",
    "oidc:callback": "SSO return with state + nonce + PKCE (tests/accounts/test_oidc*)",
    "sharing-link:open": "share tokens, not user sessions (tests/sharing)",
    "sharing:landing": "share sessions only; checked below that user sessions get nothing",
    "sharing:verify": "share sessions only (tests/sharing)",
    "sharing:send-code": "share sessions only (tests/sharing)",
    "sharing:leave": "share sessions only (tests/sharing)",
    "sharing:download": "share sessions only; checked below that user sessions get nothing",
    "sharing:download-zip": "share sessions only; checked below that user sessions get nothing",
}
CLASSIFIED_PREFIXES = {
    "otp_webauthn:": "passkey ceremonies for the caller's own account (tests/accounts/test_passkeys*)",
    "scim:": "bearer tokens of an identity provider only; checked below that sessions get 401",
}


def _all_url_names() -> set[str]:
    names = set()

    def walk(patterns, namespace=None):
        for p in patterns:
            if isinstance(p, URLResolver):
                if p.app_name == "admin":
                    continue  # the admin site is checked model by model below
                walk(p.url_patterns, p.namespace or namespace)
            elif isinstance(p, URLPattern) and p.name:
                names.add(f"{namespace}:{p.name}" if namespace else p.name)

    walk(get_resolver().url_patterns)
    return names


def test_every_url_is_classified():
    unclassified = sorted(
        name
        for name in _all_url_names()
        if name not in MATRIX
        and name not in CLASSIFIED_ELSEWHERE
        and not name.startswith(tuple(CLASSIFIED_PREFIXES))
    )
    assert unclassified == [], f"add these URLs to the authorization matrix: {unclassified}"


_DENIED_REDIRECTS = ("/accounts/sign-in/", "/accounts/verify/", "/accounts/enrol/", "/admin/login/")


def _allowed(response) -> bool:
    if response.status_code in (401, 403, 404, 405):
        return False
    if response.status_code in (301, 302, 303):
        return not response["Location"].startswith(_DENIED_REDIRECTS)
    return response.status_code < 400


def _expected(persona: str, allowed_personas: set[str], org_label: str) -> bool:
    """Members of A per their role on A's objects; on B's objects only B's clinician (the
    outsider), and only where a clinician of A would be allowed on A's."""
    if org_label == "A":
        return persona in allowed_personas
    return persona == "outsider" and "clinician" in allowed_personas


def _call(client: Client, method: str, path: str, kwargs: dict):
    return client.generic(method, path, **kwargs) if method != "GET" else client.get(path, **kwargs)


def test_matrix_has_no_unexpected_allows_or_denies(world, capsys):
    unexpected_allows, unexpected_denies, rows = [], [], []
    for name, (build, allowed_personas, object_scoped) in MATRIX.items():
        targets = [("A", world.own)] + ([("B", world.other)] if object_scoped else [])
        for org_label, target in targets:
            cells = []
            for persona in PERSONAS:
                method, path, kwargs = build(world, target)
                response = _call(world.clients[persona], method, path, kwargs)
                got = _allowed(response)
                expected = _expected(persona, allowed_personas, org_label)
                cells.append(f"{'Y' if got else '.'}{'' if got == expected else '!'}")
                if got and not expected:
                    unexpected_allows.append((name, org_label, persona, response.status_code))
                elif expected and not got:
                    unexpected_denies.append((name, org_label, persona, response.status_code))
            rows.append(f"{name:34} {org_label}  " + " ".join(f"{c:3}" for c in cells))
    with capsys.disabled():
        print("\n" + " " * 38 + " ".join(f"{p[:3]:3}" for p in PERSONAS))
        print("\n".join(rows))
        print(f"unexpected allows: {len(unexpected_allows)}, unexpected denies: {len(unexpected_denies)}")
    assert unexpected_allows == []
    assert unexpected_denies == []


@pytest.mark.parametrize("path", ["/", "/dicomweb/studies", "/dicomweb/series", "/dicomweb/instances"])
def test_lists_show_only_what_each_persona_may_see(world, path):
    own_uid = _uids(world.own)["study"].encode()
    other_uid = _uids(world.other)["study"].encode()
    for persona in PERSONAS:
        response = world.clients[persona].get(path, HTTP_ACCEPT="application/dicom+json, text/html")
        body = response.content
        assert other_uid not in body or persona == "outsider", (path, persona)
        if persona in READERS and path != "/":
            assert own_uid in body, (path, persona)
        if persona not in READERS:
            assert own_uid not in body, (path, persona)


def test_only_importers_store(world):
    for persona in PERSONAS:
        method, path, kwargs = _stow(world, world.own)
        response = _call(world.clients[persona], method, path, kwargs)
        assert _allowed(response) == (persona in IMPORTERS), (persona, response.status_code)


def test_user_sessions_reach_no_share_or_scim_resource(world):
    for persona in PERSONAS:
        client = world.clients[persona]
        for path in ("/share/download/zip", "/scim/v2/Users", "/scim/v2/Groups"):
            response = client.get(path)
            assert not _allowed(response) or b"DICM" not in response.content, (persona, path)
            if path.startswith("/scim/"):
                assert response.status_code == 401, (persona, path, response.status_code)
        landing = client.get("/share/")
        assert _uids(world.own)["study"].encode() not in landing.content


# --- the admin site, model by model ------------------------------------------------------------

# Changelist access by persona. Everything not listed: nobody (no Django permissions granted).
ADMIN_EXPECTED = {
    "accounts.user": {"admin"},
    "accounts.organization": {"admin"},
    "accounts.apitoken": NOBODY,  # needs the apitoken model permissions, which no role is given
    "accounts.accessrule": {"admin"},
    "accounts.scimclient": {"admin"},
    "accounts.externalidentity": {"admin"},
    "archive.studygrant": {"admin"},
    "archive.patientlink": {"staff"},
    "archive.study": {"staff"},
    "archive.series": {"staff"},  # reached from a study's page
    "archive.datakey": {"admin"},  # the admin persona is a key custodian
    "audit.auditevent": {"auditor"},
    "sharing.share": {"staff"},
}


def test_admin_changelists_match_the_roles(world):
    unexpected = []
    for model in admin.site._registry:
        label = f"{model._meta.app_label}.{model._meta.model_name}"
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        for persona in PERSONAS:
            response = world.clients[persona].get(url)
            got = response.status_code == 200
            expected = persona in ADMIN_EXPECTED.get(label, NOBODY)
            if got != expected:
                unexpected.append((label, persona, response.status_code))
    assert unexpected == []


def test_admin_sees_no_other_organisations_people(world, other_org):
    client = world.clients["admin"]
    outsider = world.users["outsider"]
    assert client.get(f"/admin/accounts/user/{outsider.pk}/change/").status_code in (302, 404)
    assert outsider.email.encode() not in client.get("/admin/accounts/user/").content
    assert client.get(f"/admin/accounts/organization/{other_org.pk}/change/").status_code in (302, 404)
    own = world.users["clinician"]
    assert client.get(f"/admin/accounts/user/{own.pk}/change/").status_code == 200
    assert Study.objects.count() == 2


# --- websockets: every route x every persona x own/other organisation ---------------------------

WS_ORIGIN = "http://127.0.0.1:8000"


def _ws_headers(client: Client) -> list[tuple[bytes, bytes]]:
    from django.conf import settings

    headers = [(b"host", b"127.0.0.1:8000"), (b"origin", WS_ORIGIN.encode())]
    cookie = client.cookies.get(settings.SESSION_COOKIE_NAME)
    if cookie is not None:
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie.value}".encode()))
    return headers


async def _ws_session_allowed(client: Client) -> bool:
    from channels.testing import WebsocketCommunicator

    from config.asgi import application

    communicator = WebsocketCommunicator(application, "/ws/session/", headers=_ws_headers(client))
    connected, _ = await communicator.connect(timeout=10)
    if connected:
        await communicator.send_json_to({"type": "ping"})
        connected = (await communicator.receive_json_from(timeout=10)) == {"type": "pong"}
        await communicator.disconnect()
    return connected


async def _ws_viewer_pixels(client: Client, study_uid: str, instance_uid: str) -> bool:
    """True only when the socket delivers pixels of `instance_uid` to this client."""
    from asgiref.sync import sync_to_async
    from channels.testing import WebsocketCommunicator

    from config.asgi import application

    response = await sync_to_async(client.post)(
        "/viewer/ticket/", data=json.dumps({"study": study_uid}), content_type="application/json"
    )
    ticket = response.json().get("ticket") if response.status_code == 200 else "forged-" + "x" * 40
    communicator = WebsocketCommunicator(application, "/ws/viewer/", headers=_ws_headers(client))
    connected, _ = await communicator.connect(timeout=10)
    if not connected:
        return False
    try:
        await communicator.send_json_to({"type": "hello", "ticket": ticket})
        ready = await communicator.receive_output(timeout=10)
        if ready.get("type") != "websocket.send" or json.loads(ready.get("text") or "{}").get("type") != "ready":
            return False
        await communicator.send_json_to(
            {"type": "frame", "viewport": 0, "seq": 1, "instance": instance_uid, "frame": 0, "width": 16, "height": 16}
        )
        reply = await communicator.receive_output(timeout=20)
        return reply.get("bytes") is not None
    finally:
        await communicator.disconnect()


async def test_websocket_routes_match_the_roles(world):
    unexpected = []
    for persona in PERSONAS:
        client = world.clients[persona]
        if await _ws_session_allowed(client) != (persona in VERIFIED):
            unexpected.append(("/ws/session/", persona))
        for org_label, target in (("A", world.own), ("B", world.other)):
            u = _uids(target)
            got = await _ws_viewer_pixels(client, u["study"], u["instance"])
            if got != _expected(persona, READERS, org_label):
                unexpected.append(("/ws/viewer/", org_label, persona, got))
    # A socket opened for A's study never renders B's image, whoever asks.
    for persona in PERSONAS:
        if await _ws_viewer_pixels(world.clients[persona], _uids(world.own)["study"], _uids(world.other)["instance"]):
            unexpected.append(("/ws/viewer/ cross-study", persona))
    assert unexpected == []
