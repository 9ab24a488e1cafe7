"""Admin for the archive: studies (with their series and instances), and data keys.

Studies arrive only through ingest, so nothing is added or deleted here; the one thing staff
change is a study's classification. PRIVACY: lists show accession numbers, dates and UIDs,
never patient names, and search matches accession numbers and UIDs only.
"""

from django.contrib import admin
from django.db.models import Count

from accounts.admin import PolicyChangeAdmin
from accounts.policy import Action, can, organizations_where
from archive.access import study_filter
from archive.models import DataKey, Instance, PatientLink, Series, Study, StudyGrant
from audit.services import record

_STUDY_PATH = {Study: "", Series: "study__", Instance: "series__study__"}


class _ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_view_permission(self, request, obj=None):
        return True  # the parent admin decided already

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class SeriesInline(_ReadOnlyInline):
    model = Series
    fields = ["series_instance_uid", "series_number", "modality", "series_description", "body_part_examined",
              "number_of_instances"]
    ordering = ["series_number", "pk"]


class InstanceInline(_ReadOnlyInline):
    model = Instance
    fields = ["sop_instance_uid", "instance_number", "rows", "columns", "number_of_frames", "transfer_syntax_uid",
              "size", "source", "created_at"]
    ordering = ["instance_number", "pk"]
    show_change_link = False


class ModalityFilter(admin.SimpleListFilter):
    title = "modality"
    parameter_name = "modality"

    def lookups(self, request, model_admin):
        modalities = (
            Series.objects.filter(organization_id__in=organizations_where(request.user, Action.STUDY_VIEW))
            .exclude(modality="")
            .values_list("modality", flat=True)
            .distinct()
            .order_by("modality")
        )
        return [(m, m) for m in modalities]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(series__modality=self.value()).distinct()
        return queryset


class _ArchiveAdmin(admin.ModelAdmin):
    """Visible to staff who may view studies, limited to their organisations."""

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_staff and can(request.user, Action.STUDY_VIEW).allowed

    def has_view_permission(self, request, obj=None):
        if obj is not None:
            return can(request.user, Action.STUDY_VIEW, obj).allowed
        return self.has_module_permission(request)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        # The same filter as every other lookup: patients' own records, restricted-study grants.
        return super().get_queryset(request).filter(study_filter(request.user, _STUDY_PATH[self.model]))


@admin.register(Study)
class StudyAdmin(_ArchiveAdmin):
    list_display = ["accession_number", "study_date", "modalities_in_study", "number_of_series",
                    "number_of_instances", "classification", "organization"]
    list_filter = ["classification", ModalityFilter, "organization"]
    # PRIVACY: exact UIDs and accession-number prefixes; no searching by patient attributes.
    search_fields = ["^accession_number", "=study_instance_uid"]
    ordering = ["-study_date", "-study_time", "-pk"]
    list_select_related = ["organization"]
    list_per_page = 100
    show_full_result_count = False
    fields = ["organization", "patient", "study_instance_uid", "accession_number", "study_id", "study_date",
              "study_time", "study_description", "referring_physician_name", "modalities_in_study",
              "number_of_series", "number_of_instances", "classification", "created_at"]
    inlines = [SeriesInline]

    def get_readonly_fields(self, request, obj=None):
        return [name for name in self.fields if name != "classification"]

    def has_change_permission(self, request, obj=None):
        # Staff (who import studies) label them; viewing alone does not allow it.
        if obj is None:
            return can(request.user, Action.STUDY_IMPORT).allowed
        return can(request.user, Action.STUDY_IMPORT, obj).allowed

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if "classification" in form.changed_data:
            record(action="study.classification_changed", actor=request.user, request=request,
                   organization=obj.organization_id, object_type="study", object_id=obj.study_instance_uid,
                   details={"classification": obj.classification})


@admin.register(Series)
class SeriesAdmin(_ArchiveAdmin):
    list_display = ["series_instance_uid", "modality", "series_number", "number_of_instances", "study"]
    search_fields = ["=series_instance_uid", "=study__study_instance_uid"]
    list_select_related = ["study"]
    fields = ["organization", "study", "series_instance_uid", "series_number", "modality", "series_description",
              "body_part_examined", "number_of_instances"]
    readonly_fields = fields
    inlines = [InstanceInline]

    def get_model_perms(self, request):
        return {}  # not on the index: reached from a study's page


@admin.register(DataKey)
class DataKeyAdmin(admin.ModelAdmin):
    """Data keys, read-only, for key custodians. SECURITY: the wrapped key bytes are never shown."""

    list_display = ["key_id", "organization", "state", "kek_id", "instances", "created_at"]
    list_filter = ["state", "organization"]
    search_fields = ["=key_id"]
    fields = ["key_id", "organization", "state", "kek_id", "instances", "created_at"]
    readonly_fields = fields
    ordering = ["organization", "-created_at"]

    @admin.display(description="instances")
    def instances(self, obj):
        return getattr(obj, "instance_count", None)

    def get_queryset(self, request):
        custodian_of = request.user.memberships.filter(is_key_custodian=True).values_list("organization_id", flat=True)
        queryset = super().get_queryset(request).filter(organization_id__in=list(custodian_of))
        return queryset.annotate(instance_count=Count("instances")).defer("wrapped")

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_staff and can(request.user, Action.KEYS_ROTATE).allowed

    def has_view_permission(self, request, obj=None):
        if obj is not None:
            return can(request.user, Action.KEYS_ROTATE, obj).allowed
        return self.has_module_permission(request)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(StudyGrant)
class StudyGrantAdmin(PolicyChangeAdmin):
    """Explicit grants to open `restricted` studies. Administrators decide; they see no images."""

    action = Action.ORG_MANAGE
    list_display = ["study", "user", "reason", "granted_by", "created_at", "expires_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["=study__study_instance_uid", "user__email"]
    raw_id_fields = ["study", "user"]
    fields = ["study", "user", "reason", "expires_at", "revoked_at", "granted_by", "created_at"]
    readonly_fields = ["granted_by", "created_at"]

    def organization_of(self, obj):
        return obj.study.organization_id

    def scope(self, queryset, org_ids):
        return queryset.filter(study__organization_id__in=org_ids)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.granted_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(PatientLink)
class PatientLinkAdmin(PolicyChangeAdmin):
    """Staff link a patient's account to their Patient record (the patient then sees those studies)."""

    action = Action.STUDY_IMPORT
    list_display = ["user", "patient", "method", "linked_by", "created_at"]
    list_filter = ["method"]
    search_fields = ["user__email", "=patient__patient_id"]
    raw_id_fields = ["user", "patient"]
    fields = ["user", "patient", "method", "linked_by", "created_at"]
    readonly_fields = ["method", "linked_by", "created_at"]

    def organization_of(self, obj):
        return obj.patient.organization_id

    def scope(self, queryset, org_ids):
        return queryset.filter(patient__organization_id__in=org_ids)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.method = PatientLink.Method.STAFF
            obj.linked_by = request.user
        super().save_model(request, obj, form, change)
