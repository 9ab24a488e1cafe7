"""Entry point of the test OpenID provider subprocess: `python -m tests.oidc_provider.serve`.

Generates a fresh RS256 signing key, migrates its own SQLite database, creates the users listed
in OIDC_PROVIDER_USERS and one confidential, PKCE-requiring OIDC client, then serves over uvicorn.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def _write_signing_key(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.write_bytes(pem)
    path.chmod(0o600)


def _populate() -> None:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from oauth2_provider.models import Application

    call_command("migrate", verbosity=0, interactive=False)
    users = json.loads(Path(os.environ["OIDC_PROVIDER_USERS"]).read_text())
    for username, entry in users.items():
        get_user_model().objects.create_user(username=username, password=entry["password"])
    Application.objects.create(
        name="Lightbox",
        client_id=os.environ["OIDC_PROVIDER_CLIENT_ID"],
        client_secret=os.environ["OIDC_PROVIDER_CLIENT_SECRET"],
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        # Loopback redirect URIs match on any port (RFC 8252 section 7.3), so one registration
        # serves every live server the tests start.
        redirect_uris=os.environ["OIDC_PROVIDER_REDIRECT_URI"],
        algorithm=Application.RS256_ALGORITHM,
        skip_authorization=True,
    )


def _exit_with_parent() -> None:
    # If the test run dies without stopping us, do not linger as an orphan server.
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def main() -> None:
    import django
    import uvicorn

    _exit_with_parent()

    _write_signing_key(Path(os.environ["OIDC_PROVIDER_KEY_FILE"]))
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.oidc_provider.settings"
    django.setup()
    _populate()
    from django.core.asgi import get_asgi_application

    uvicorn.run(
        get_asgi_application(),
        host="127.0.0.1",
        port=int(os.environ["OIDC_PROVIDER_PORT"]),
        log_level="warning",
        lifespan="off",
    )


if __name__ == "__main__":
    main()
