"""The one way to look up studies, series and instances for a caller.

Every lookup goes through the policy seam; an unknown UID and a forbidden UID both raise
Http404, so a caller cannot probe which UIDs exist in another organisation.
"""

from __future__ import annotations

from django.http import Http404

from accounts.policy import Action, organizations_where
from archive.models import Instance, Series, Study


def visible_organization_ids(user, action: str = Action.STUDY_VIEW) -> list[int]:
    """Organisations whose studies `user` may see."""
    return organizations_where(user, action)


def studies_for(user):
    """QuerySet of studies visible to `user`."""
    return Study.objects.filter(organization_id__in=visible_organization_ids(user))


def series_for(user):
    """QuerySet of series visible to `user`."""
    return Series.objects.filter(organization_id__in=visible_organization_ids(user))


def instances_for(user):
    """QuerySet of instances visible to `user`."""
    return Instance.objects.filter(organization_id__in=visible_organization_ids(user))


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
