"""ASGI entry point: HTTP and websockets on one port.

Composed outside-in: protocol router -> allowed-hosts origin check -> session/auth ->
our signed-in guard -> the websocket URL router.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from accounts.websocket import RequireSignedInUser  # noqa: E402
from archive.dicomweb.stow import StreamStowBodies  # noqa: E402
from config.handlers import LeanASGIHandler, PathRouter  # noqa: E402
from config.lifespan import Lifespan  # noqa: E402
from viewer.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Machine clients (/dicomweb/) take a short async middleware chain (config/handlers.py);
        # STOW-RS bodies go from the socket into the encrypting blob writer, never spooled by Django.
        "http": PathRouter(django_asgi_app, StreamStowBodies(LeanASGIHandler())),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(RequireSignedInUser(URLRouter(websocket_urlpatterns)))
        ),
        "lifespan": Lifespan(),
    }
)
