from django.conf import settings
from django.core.checks import Error, Tags, register


@register(Tags.security)
def check_audit_key(app_configs, **kwargs):
    key = getattr(settings, "AUDIT_HMAC_KEY", "")
    if len(key) < 32:
        return [Error("LIGHTBOX_AUDIT_KEY must be at least 32 characters.", id="audit.E001")]
    if key == settings.SECRET_KEY:
        return [Error("LIGHTBOX_AUDIT_KEY must differ from SECRET_KEY.", id="audit.E002")]
    return []
