"""The one way to look up studies, series and instances for a caller.

Every lookup goes through the policy seam; an unknown UID and a forbidden UID both raise
Http404, so a caller cannot probe which UIDs exist in another organisation.
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q
from django.http import Http404

from accounts.policy import Action, organizations_where, visibility
from archive.models import Classification, Instance, PatientLink, Series, Study, StudyGrant


def visible_organization_ids(user, action: str = Action.STUDY_VIEW) -> list[int]:
    """Organisations some of whose studies `user` may see."""
    return organizations_where(user, action)


def study_filter(user, prefix: str = "", action: str = Action.STUDY_VIEW) -> Q:
    """A filter for the studies `user` may act on, applied at `prefix` ("" for Study, "study__"
    for Series, "series__study__" for Instance).

    The same rules as accounts.policy.can on one study: organisation and role (with access
    rules), a patient's own record only, restricted studies only with a current grant.
    """
    seen = visibility(user, action)
    if not seen.org_ids:
        return Q(pk__in=[])
    allowed = Q(**{f"{prefix}organization_id__in": sorted(seen.full_org_ids)})
    if seen.own_patient_org_ids:
        own_patients = PatientLink.objects.filter(user=user).values("patient_id")
        allowed |= Q(
            **{
                f"{prefix}organization_id__in": sorted(seen.own_patient_org_ids),
                f"{prefix}patient_id__in": own_patients,
            }
        )
    study_pk = OuterRef(f"{prefix}pk") if prefix == "" else OuterRef(prefix.removesuffix("__"))
    granted = Exists(StudyGrant.objects.current().filter(user=user, study=study_pk))
    return allowed & (~Q(**{f"{prefix}classification": Classification.RESTRICTED}) | granted)


def studies_for(user, action: str = Action.STUDY_VIEW):
    """QuerySet of studies visible to `user`."""
    return Study.objects.filter(study_filter(user, "", action))


def series_for(user, action: str = Action.STUDY_VIEW):
    """QuerySet of series visible to `user`."""
    return Series.objects.filter(study_filter(user, "study__", action))


def instances_for(user, action: str = Action.STUDY_VIEW):
    """QuerySet of instances visible to `user`."""
    return Instance.objects.filter(study_filter(user, "series__study__", action))


def get_study(user, study_uid: str) -> Study:
    """Return the study or raise Http404 (unknown and forbidden look the same)."""
    study = studies_for(user).filter(study_instance_uid=study_uid).first()
    if study is None:
        raise Http404("no such study")
    return study


def get_series(user, study_uid: str, series_uid: str) -> Series:
    series = (
        series_for(user)
        .filter(series_instance_uid=series_uid, study__study_instance_uid=study_uid)
        .select_related("study")
        .first()
    )
    if series is None:
        raise Http404("no such series")
    return series


def get_instance(user, study_uid: str, series_uid: str, instance_uid: str) -> Instance:
    instance = (
        instances_for(user)
        .filter(
            sop_instance_uid=instance_uid,
            series__series_instance_uid=series_uid,
            series__study__study_instance_uid=study_uid,
        )
        .select_related("series", "series__study")
        .first()
    )
    if instance is None:
        raise Http404("no such instance")
    return instance


def instances_in_scope(user, study: str, series: str | None = None, instance: str | None = None):
    """Return (instances queryset, organisation id) of a study, a series of it, or one instance.

    The resource named by the deepest UID given is looked up first, so an unknown or forbidden
    UID at any level raises Http404 before anything is listed.
    """
    if instance is not None:
        found = get_instance(user, study, series, instance)
        return instances_for(user).filter(pk=found.pk), found.organization_id
    if series is not None:
        found = get_series(user, study, series)
        return instances_for(user).filter(series=found), found.organization_id
    found = get_study(user, study)
    return instances_for(user).filter(series__study=found), found.organization_id
