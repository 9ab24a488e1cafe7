"""Routes: the link itself at /s/<token> (namespace sharing-link) and the recipient's pages at /share/."""

from django.urls import path

from sharing import views

app_name = "sharing"

urlpatterns = [
    path("", views.landing, name="landing"),
    path("verify/", views.verify_view, name="verify"),
    path("code/", views.send_code, name="send-code"),
    path("leave/", views.leave, name="leave"),
    path("download/", views.download_start, name="download"),
    path("download/zip", views.download_zip, name="download-zip"),
    path("new/<str:study_uid>/", views.new_share, name="new"),
]

link_patterns = [
    path("<str:token>", views.open_link, name="open"),
]
