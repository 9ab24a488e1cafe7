"""Concurrent ingest: many clients sending the same objects at once keep exactly one copy."""

from __future__ import annotations

import io
from collections import Counter

import pytest

from archive import synthetic
from archive.models import Instance, Series, Study
from archive.services import Status, ingest_many
from archive.storage import get_store
from tests.threads import run_concurrently

CLIENTS = 20


@pytest.mark.django_db(transaction=True)
def test_twenty_clients_resending_a_study_at_once_leave_one_copy_of_each_instance(org):
    objects = [synthetic.to_bytes(ds) for ds in synthetic.ct_study(slices=6, size=32)]
    def client(n: int) -> list:
        # Each client sends the study in its own order, so batches overlap differently.
        order = objects[n % len(objects) :] + objects[: n % len(objects)]
        settled = ingest_many(
            ((i, io.BytesIO(data)) for i, data in enumerate(order)), organization=org, source="test", batch_size=3
        )
        return [result for _, result in settled]

    by_client, errors = run_concurrently(CLIENTS, client, timeout=120)
    results = [result for settled in by_client.values() for result in settled]

    assert not errors, errors
    assert len(results) == CLIENTS * len(objects)
    statuses = Counter(r.status for r in results)
    assert statuses == {Status.STORED: len(objects), Status.DUPLICATE: (CLIENTS - 1) * len(objects)}
    assert Instance.objects.count() == len(objects)
    assert len({r.instance_id for r in results}) == len(objects)
    study = Study.objects.get()
    assert (study.number_of_instances, study.number_of_series) == (len(objects), 1)
    assert Series.objects.get().number_of_instances == len(objects)
    # Losing writers deleted their blobs: one blob per instance, each the one indexed.
    assert sorted(get_store().iter_blob_ids()) == sorted(Instance.objects.values_list("blob_id", flat=True))
