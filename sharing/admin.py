"""Shares in the Django admin: list, filters, access history, revoke/extend/new code/new link.

Creating goes through the same service and policy as everywhere (`services.create_share`); the
link and the access code are rendered once in the response to the POST and stored nowhere.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import reverse

from accounts.policy import Action, can, organizations_where
from accounts.stepup import require_fresh_step_up, step_up_url
from archive import access
from sharing import services
from sharing.emails import link_path
from sharing.errors import ShareRefused
from sharing.forms import ShareCreateForm
from sharing.models import Share, ShareAccess
from sharing.tokens import format_code

EXTEND_DAYS = 7


class ShareAccessInline(admin.TabularInline):
    model = ShareAccess
    extra = 0
    can_delete = False
    fields = ("at", "event", "outcome", "ip_address", "user_agent", "detail")
    readonly_fields = fields
    ordering = ("-at",)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Share)
class ShareAdmin(admin.ModelAdmin):
    list_display = (
        "id", "recipient_label", "recipient_kind", "state", "expires_at", "open_count", "max_opens",
        "download", "created_by", "created_at",
    )
    list_filter = ("state", "expires_at", "created_by", "recipient_kind", "verification", "download")
    search_fields = ("recipient_name", "recipient_email")
    date_hierarchy = "created_at"
    inlines = [ShareAccessInline]
    actions = ["revoke", "extend", "resend_code", "regenerate_link"]
    readonly_fields = (
        "organization", "created_by", "created_at", "study", "series", "recipient_name", "recipient_email",
        "recipient_phone", "recipient_kind", "verification", "expires_at", "max_opens", "open_count", "download",
        "phi_display", "message", "notify_creator_on_open", "state", "state_changed_at", "state_changed_by",
        "state_reason", "failed_attempts", "locked_until",
    )
    fields = readonly_fields

    def get_queryset(self, request):
        qs = super().get_queryset(request).select_related("created_by", "study")
        if request.user.is_superuser:
            return qs
        # SECURITY: staff see only shares of organisations where they may manage shares.
        return qs.filter(organization_id__in=organizations_where(request.user, Action.SHARE_MANAGE))

    def _may_manage(self, request, obj=None) -> bool:
        # The policy decides (staff and clinicians with the admin site), not global model permissions.
        user = request.user
        if not (user.is_active and user.is_staff):
            return False
        return user.is_superuser or can(user, Action.SHARE_MANAGE, obj).allowed

    def has_module_permission(self, request):
        return self._may_manage(request)

    def has_view_permission(self, request, obj=None):
        return self._may_manage(request, obj)

    def has_add_permission(self, request):
        return self._may_manage(request)

    def has_change_permission(self, request, obj=None):
        # Shares are changed only through the actions (each a service with its own audit event).
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead: the history must stay

    # --- creation: our own form, the service, and a one-time page with the secrets -------------

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        studies = access.studies_for(request.user).filter(
            organization_id__in=organizations_where(request.user, Action.SHARE_MANAGE)
        ).order_by("-created_at")
        form = ShareCreateForm(request.POST or None, studies=studies)
        error, step_up_link = "", ""
        if request.method == "POST" and form.is_valid():
            try:
                created = services.create_share(
                    creator=request.user, step_up_fresh=require_fresh_step_up(request.session), request=request,
                    **form.service_kwargs(),
                )
            except ShareRefused as exc:
                error = exc.message
                step_up_link = step_up_url(request.path) if exc.step_up else ""
            else:
                return self._secrets_page(
                    request, "Share created", [(created.share, created.token, created.access_code)]
                )
        context = {
            **self.admin_site.each_context(request),
            "title": "Create a share",
            "form": form,
            "error": error,
            "step_up_link": step_up_link,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "sharing/admin/create.html", context, status=400 if error else 200)

    def _secrets_page(self, request, title, rows):
        items = [
            {
                "share": share,
                "link": request.build_absolute_uri(link_path(token)) if token else "",
                "access_code": code,
                "formatted_code": format_code(code) if code else "",
            }
            for share, token, code in rows
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "items": items,
            "back_url": reverse("admin:sharing_share_changelist"),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "sharing/admin/secrets.html", context)

    # --- actions ----------------------------------------------------------------------------------

    @admin.action(description="Revoke selected shares (closes open viewers at once)")
    def revoke(self, request, queryset):
        count = sum(services.revoke_share(share=s, by=request.user, reason="revoked in admin", request=request)
                    for s in queryset)
        self.message_user(request, f"Revoked {count} share(s).", messages.SUCCESS)

    @admin.action(description=f"Extend selected shares by {EXTEND_DAYS} days (within the organisation's maximum)")
    def extend(self, request, queryset):
        done = 0
        for share in queryset:
            try:
                services.extend_share(share=share, by=request.user, days=EXTEND_DAYS, request=request)
                done += 1
            except ShareRefused as exc:
                self.message_user(request, f"Share {share.pk}: {exc.message}", messages.WARNING)
        self.message_user(request, f"Extended {done} share(s).", messages.SUCCESS)

    @admin.action(description="Issue a new access code (shown once)")
    def resend_code(self, request, queryset):
        rows = []
        for share in queryset:
            try:
                rows.append((share, None, services.reset_access_code(share=share, by=request.user, request=request)))
            except ShareRefused as exc:
                self.message_user(request, f"Share {share.pk}: {exc.message}", messages.WARNING)
        return self._secrets_page(request, "New access codes", rows) if rows else None

    @admin.action(description="Regenerate link (old link stops working; shown once)")
    def regenerate_link(self, request, queryset):
        rows = []
        for share in queryset:
            try:
                rows.append((share, services.regenerate_link(share=share, by=request.user, request=request), None))
            except ShareRefused as exc:
                self.message_user(request, f"Share {share.pk}: {exc.message}", messages.WARNING)
        return self._secrets_page(request, "New links", rows) if rows else None
