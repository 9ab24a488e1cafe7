"""Fixtures for sharing tests: a small stored study (two MR series + an ultrasound cine), a second
study of another patient, and a helper that creates shares through the real service."""

from __future__ import annotations

import pytest

from accounts.models import Role
from archive import synthetic
from tests import factories
from tests.sharing.helpers import store_study


@pytest.fixture
def study(org):
    return store_study(org)


@pytest.fixture
def other_study(org):
    other = synthetic.SyntheticPatient(name="ROE^RICHARD", patient_id="PID-OTHER", birth_date="19600101")
    return store_study(org, patient=other, seed=7, with_us=False)


@pytest.fixture
def staff(org):
    """A share manager (staff role) who may use the admin."""
    return factories.make_user(email="staff@example.org", organization=org, role=Role.STAFF, is_staff=True)


@pytest.fixture
def make_share(owner, study):
    """Create a share through the service (policy, audit, e-mail) and return CreatedShare."""
    from sharing import services

    def _make(**kwargs):
        kwargs.setdefault("creator", owner)
        kwargs.setdefault("study", study)
        kwargs.setdefault("recipient_name", "Dr Recipient")
        kwargs.setdefault("recipient_email", "recipient@example.net")
        kwargs.setdefault("step_up_fresh", kwargs.get("download") == "original")
        return services.create_share(**kwargs)

    return _make


@pytest.fixture(autouse=True)
def _fresh_cache():
    """The locmem cache outlives a test; rate-limit counters must not leak between tests."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()
