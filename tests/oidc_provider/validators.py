"""Claims for the test provider's users come from a JSON file the test harness writes.

Each user entry: {"password": ..., "claims": {...}, "sign_override": {...}, "tamper_after_signing": {...},
"userinfo_override": {...}}.
`sign_override` claims replace what the provider would put in the ID token *before* it is signed
(a validly signed token with a wrong nonce, audience, ...); `tamper_after_signing` claims are
swapped into the payload *after* signing, as an attacker in the middle would, so the signature
no longer matches.
"""

from __future__ import annotations

import base64
import json
import os
from functools import cache

from oauth2_provider.oauth2_validators import OAuth2Validator


@cache
def users() -> dict:
    with open(os.environ["OIDC_PROVIDER_USERS"]) as handle:
        return json.load(handle)


def _entry(request) -> dict:
    return users().get(request.user.get_username(), {})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ClaimsFromFileValidator(OAuth2Validator):
    oidc_claim_scope = {
        **OAuth2Validator.oidc_claim_scope,
        "amr": "openid",
        "acr": "openid",
        "groups": "groups",
        "org": "groups",
    }

    def get_additional_claims(self, request):
        return dict(_entry(request).get("claims", {}))

    def get_userinfo_claims(self, request):
        return {**super().get_userinfo_claims(request), **_entry(request).get("userinfo_override", {})}

    def get_id_token_dictionary(self, token, token_handler, request):
        claims, expires = super().get_id_token_dictionary(token, token_handler, request)
        return {**claims, **_entry(request).get("sign_override", {})}, expires

    def finalize_id_token(self, id_token, token, token_handler, request):
        serialized = super().finalize_id_token(id_token, token, token_handler, request)
        tampered = _entry(request).get("tamper_after_signing")
        if tampered:
            header, payload, signature = serialized.split(".")
            claims = {**json.loads(_unb64(payload)), **tampered}
            serialized = ".".join([header, _b64(json.dumps(claims).encode()), signature])
        return serialized
