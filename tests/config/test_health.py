import pytest

pytestmark = pytest.mark.django_db


def test_healthz_reports_every_part_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "channel_layer": "ok", "data_dir": "ok"}}


def test_healthz_names_the_part_that_failed(client, settings, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data directory should be")
    settings.DATA_DIR = blocker
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "channel_layer": "ok", "data_dir": "failed"}
