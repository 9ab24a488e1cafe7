"""Routes of the viewer app. The WADO-RS rendered/thumbnail resources sit under /dicomweb/."""

from django.urls import path

from viewer import views
from viewer import wado_rendered as rendered

app_name = "viewer"

INSTANCE = "studies/<str:study>/series/<str:series>/instances/<str:instance>"

# The viewer pages, mounted at /viewer/ by config/urls.py.
urlpatterns = [
    path("ticket/", views.ticket, name="ticket"),
    path("thumb/<str:study_uid>/<str:series_uid>/", views.series_thumbnail, name="thumbnail"),
    path("<str:study_uid>/", views.viewer_page, name="viewer"),
]

dicomweb_patterns = [
    path("studies/<str:study>/rendered", rendered.study_rendered, name="study-rendered"),
    path("studies/<str:study>/thumbnail", rendered.study_thumbnail, name="study-thumbnail"),
    path("studies/<str:study>/series/<str:series>/rendered", rendered.series_rendered, name="series-rendered"),
    path("studies/<str:study>/series/<str:series>/thumbnail", rendered.series_thumbnail, name="series-thumbnail"),
    path(f"{INSTANCE}/rendered", rendered.instance_rendered, name="instance-rendered"),
    path(f"{INSTANCE}/thumbnail", rendered.instance_thumbnail, name="instance-thumbnail"),
    path(f"{INSTANCE}/frames/<str:frames>/rendered", rendered.frames_rendered, name="frames-rendered"),
]
