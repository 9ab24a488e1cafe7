from django.urls import path

from accounts import passkeys, patient_link, second_factor_views, session_views, views

app_name = "accounts"

urlpatterns = [
    path("link-patient/", patient_link.link_patient, name="link_patient"),
    path("sign-in/", views.sign_in, name="login"),
    path("sign-out/", views.sign_out, name="logout"),
    path("verify/", second_factor_views.verify, name="verify"),
    path("enrol/", second_factor_views.enrol, name="enrol"),
    path("security/", second_factor_views.security, name="security"),
    path("security/backup-codes/new", second_factor_views.backup_codes_new, name="backup_codes_new"),
    path("security/remove-device/", second_factor_views.remove_device, name="remove_device"),
    path("passkeys/", passkeys.passkey_list, name="passkeys"),
    path("passkeys/<int:pk>/remove/", passkeys.passkey_remove, name="passkey_remove"),
    path("sessions/", session_views.session_list, name="sessions"),
    path("sessions/<int:pk>/end", session_views.session_end, name="session_end"),
    path("sessions/end-all", session_views.sign_out_everywhere, name="sign_out_everywhere"),
    path("sessions/keepalive", session_views.keepalive, name="session_keepalive"),
    path("sessions/status", session_views.status, name="session_status"),
]
