from django.contrib import admin
from django.db.models import Q

from accounts.models import Membership
from accounts.policy import Action, can, organizations_where
from audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only view of the trail for auditors; nobody can add, edit or delete."""

    list_display = ["sequence", "created_at", "action", "outcome", "actor_label", "object_type", "object_id", "source_ip"]
    list_filter = ["action", "outcome", "actor_type"]
    search_fields = ["actor_label", "object_id", "request_id"]
    date_hierarchy = "created_at"
    ordering = ["-sequence"]
    list_per_page = 100
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_module_permission(self, request):
        # Separation of duties: only auditors read the trail, not administrators or superusers.
        return can(request.user, Action.AUDIT_VIEW).allowed

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        # An auditor sees the events of the organisations they audit, plus their own.
        # Events without an organisation (sign-ins) are shown when the actor is a member there.
        org_ids = organizations_where(request.user, Action.AUDIT_VIEW)
        member_ids = [
            str(pk) for pk in Membership.objects.filter(organization_id__in=org_ids).values_list("user_id", flat=True)
        ]
        return queryset.filter(Q(organization_id__in=org_ids) | Q(actor_type="user", actor_id__in=member_ids))
