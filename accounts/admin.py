"""Admin for people, organisations, roles and access policy.

Changing any of them is a policy change: it needs a fresh second-factor verification (step-up)
and is written to the audit trail with the names of the changed fields (never their values,
which may be secrets or personal data).
"""

from urllib.parse import urlencode

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpResponseRedirect
from django.urls import reverse

from accounts.access_rules import parse_networks
from accounts.mfa import step_up_is_fresh
from accounts.models import AccessRule, ApiToken, ExternalIdentity, Membership, Organization, ScimClient, User
from accounts.policy import Action, can, organizations_where
from audit.services import record


class StepUpAuditMixin:
    """Require step-up before saving or deleting, and audit each change as `policy.changed`."""

    def _needs_step_up(self, request):
        if request.method == "POST" and not step_up_is_fresh(request.session):
            query = urlencode({"next": request.get_full_path(), "step_up": "1"})
            return HttpResponseRedirect(f"{reverse('accounts:verify')}?{query}")
        return None

    def changeform_view(self, request, *args, **kwargs):
        return self._needs_step_up(request) or super().changeform_view(request, *args, **kwargs)

    def delete_view(self, request, *args, **kwargs):
        return self._needs_step_up(request) or super().delete_view(request, *args, **kwargs)

    def changelist_view(self, request, *args, **kwargs):
        return self._needs_step_up(request) or super().changelist_view(request, *args, **kwargs)

    def _audit(self, request, obj, verb, fields=()):
        record(
            action="policy.changed",
            actor=request.user,
            request=request,
            object_type=obj._meta.model_name,
            object_id=obj.pk,
            details={"change": verb, "fields": sorted(fields)},
        )

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        self._audit(request, obj, "changed" if change else "added", form.changed_data)

    def delete_model(self, request, obj):
        self._audit(request, obj, "deleted")
        super().delete_model(request, obj)

    def save_formset(self, request, form, formset, change):
        super().save_formset(request, form, formset, change)
        for obj in formset.new_objects:
            self._audit(request, obj, "added")
        for obj, fields in formset.changed_objects:
            self._audit(request, obj, "changed", fields)
        for obj in formset.deleted_objects:
            self._audit(request, obj, "deleted")


class PolicyChangeAdmin(StepUpAuditMixin, admin.ModelAdmin):
    """Objects owned by an organisation, managed by members whose role allows `action` there."""

    action: str = Action.ORG_MANAGE

    def organization_of(self, obj) -> int:
        return obj.organization_id

    def scope(self, queryset, org_ids):
        return queryset.filter(organization_id__in=org_ids)

    def _allowed(self, request, obj=None) -> bool:
        if not (request.user.is_active and request.user.is_staff):
            return False
        if obj is None:
            return can(request.user, self.action).allowed
        return can(request.user, self.action, _OrgRef(self.organization_of(obj))).allowed

    def has_module_permission(self, request):
        return self._allowed(request)

    def has_view_permission(self, request, obj=None):
        return self._allowed(request, obj)

    def has_add_permission(self, request):
        return self._allowed(request)

    def has_change_permission(self, request, obj=None):
        return self._allowed(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._allowed(request, obj)

    def get_queryset(self, request):
        return self.scope(super().get_queryset(request), organizations_where(request.user, self.action))

    def save_model(self, request, obj, form, change):
        # SECURITY: raw-id and select fields can name another organisation's objects; refuse.
        if not can(request.user, self.action, _OrgRef(self.organization_of(obj))).allowed:
            raise PermissionDenied("You may not change policy for that organisation.")
        super().save_model(request, obj, form, change)


class _OrgRef:
    """Stands for "something in organisation N" when asking the policy about it."""

    def __init__(self, organization_id):
        self.organization_id = organization_id


class AccessRuleForm(forms.ModelForm):
    class Meta:
        model = AccessRule
        fields = ["organization", "role", "allowed_networks", "hours_start", "hours_end", "note"]

    def clean_allowed_networks(self):
        text = self.cleaned_data["allowed_networks"]
        try:
            parse_networks(text)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None
        return text

    def clean(self):
        data = super().clean()
        if (data.get("hours_start") is None) != (data.get("hours_end") is None):
            raise forms.ValidationError("Give both the start and the end of the allowed hours, or neither.")
        return data


@admin.register(AccessRule)
class AccessRuleAdmin(PolicyChangeAdmin):
    """Where and when an organisation's members (or one role) may work: networks and hours."""

    form = AccessRuleForm
    list_display = ["organization", "role", "networks", "hours_start", "hours_end", "note"]
    list_filter = ["role"]

    @admin.display(description="networks")
    def networks(self, obj):
        return ", ".join(str(n) for n in parse_networks(obj.allowed_networks)) or "any"

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "organization":
            kwargs["queryset"] = Organization.objects.filter(
                pk__in=organizations_where(request.user, Action.ORG_MANAGE)
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


def _managed_org_ids(request) -> list[int]:
    return organizations_where(request.user, Action.ORG_MANAGE)


class OrgScopedAdminMixin:
    """Organisation administrators see and change only their own organisations' people.

    # SECURITY: Django's model permissions are global; without this an administrator of one
    # hospital could read and edit another hospital's users. Superusers (break-glass) see all.
    """

    def _may_manage(self, request) -> bool:
        return request.user.is_superuser or can(request.user, Action.ORG_MANAGE).allowed

    def has_module_permission(self, request):
        return self._may_manage(request) and super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return self._may_manage(request) and super().has_view_permission(request, obj)

    def has_add_permission(self, request, *args):
        return self._may_manage(request) and super().has_add_permission(request, *args)

    def has_change_permission(self, request, obj=None):
        return self._may_manage(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._may_manage(request) and super().has_delete_permission(request, obj)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return queryset if request.user.is_superuser else self.scope(queryset, _managed_org_ids(request))


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "organization" and not request.user.is_superuser:
            kwargs["queryset"] = Organization.objects.filter(pk__in=_managed_org_ids(request))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(organization_id__in=_managed_org_ids(request))


@admin.register(Organization)
class OrganizationAdmin(OrgScopedAdminMixin, StepUpAuditMixin, admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]

    def scope(self, queryset, org_ids):
        return queryset.filter(pk__in=org_ids)

    def has_add_permission(self, request, *args):
        return request.user.is_superuser  # new tenants are a platform decision


@admin.register(User)
class UserAdmin(OrgScopedAdminMixin, StepUpAuditMixin, DjangoUserAdmin):
    ordering = ["email"]
    list_display = ["email", "full_name", "is_active", "is_staff", "last_login"]
    list_filter = ["is_active", "is_staff", "memberships__role"]
    search_fields = ["email", "full_name"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Person", {"fields": ("full_name",)}),
        ("Access", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)
    readonly_fields = ["last_login", "date_joined"]
    inlines = [MembershipInline]

    def scope(self, queryset, org_ids):
        # Members of the managed organisations, and accounts not yet in any organisation (just
        # created, waiting for a role). Never another organisation's people.
        return queryset.filter(Q(memberships__organization_id__in=org_ids) | Q(memberships__isnull=True)).distinct()

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            # SECURITY: an organisation administrator must not be able to make anyone (least of
            # all themselves) a superuser or hand out global model permissions.
            fields += ["is_superuser", "groups", "user_permissions"]
        return fields


@admin.register(ApiToken)
class ApiTokenAdmin(OrgScopedAdminMixin, admin.ModelAdmin):
    """Tokens are issued with `manage.py issue_api_token`; here they are listed and revoked."""

    list_display = ["prefix", "user", "scope", "created_at", "expires_at", "revoked_at", "last_used_at"]
    list_filter = ["scope"]
    search_fields = ["user__email", "prefix", "name"]
    readonly_fields = ["user", "prefix", "scope", "created_at", "expires_at", "last_used_at"]
    fields = ["user", "name", "prefix", "scope", "created_at", "expires_at", "revoked_at", "last_used_at"]

    def scope(self, queryset, org_ids):
        return queryset.filter(user__memberships__organization_id__in=org_ids).distinct()

    def has_add_permission(self, request, *args):
        return False


@admin.register(ScimClient)
class ScimClientAdmin(PolicyChangeAdmin):
    """Identity providers allowed to provision users (issued with `manage.py issue_scim_token`).

    Listed and revoked here; the token itself is shown once, by the command, and stored hashed.
    """

    list_display = ["name", "organization", "prefix", "created_at", "last_used_at", "revoked_at"]
    fields = ["name", "organization", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["name", "organization", "prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Revoke the selected SCIM tokens")
    def revoke(self, request, queryset):
        from django.utils import timezone

        for client in queryset.filter(revoked_at__isnull=True):
            client.revoked_at = timezone.now()
            client.save(update_fields=["revoked_at"])
            self._audit(request, client, "revoked")


@admin.register(ExternalIdentity)
class ExternalIdentityAdmin(admin.ModelAdmin):
    """Single sign-on links (issuer + subject) of this organisation's people; read-only."""

    list_display = ["user", "issuer", "subject", "created_at", "last_login_at"]
    search_fields = ["user__email", "=subject"]
    readonly_fields = ["user", "issuer", "subject", "created_at", "last_login_at"]

    def _allowed(self, request) -> bool:
        return request.user.is_active and request.user.is_staff and (
            request.user.is_superuser or can(request.user, Action.ORG_MANAGE).allowed
        )

    def has_module_permission(self, request):
        return self._allowed(request)

    def has_view_permission(self, request, obj=None):
        return self._allowed(request)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(user__memberships__organization_id__in=_managed_org_ids(request)).distinct()
