from django.urls import path

from viewer import consumers

websocket_urlpatterns = [
    path("ws/session/", consumers.SessionEventsConsumer.as_asgi()),
    path("ws/viewer/", consumers.ViewerConsumer.as_asgi()),
]
