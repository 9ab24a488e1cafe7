"""Log lines are JSON with a request id, and never carry query strings or tokens."""

import io
import json
import logging
import logging.config

import pytest
from django.conf import settings

from config.logging import scrub


def _capture(logger_name: str, message: str, *args) -> dict:
    stream = io.StringIO()
    config = json.loads(json.dumps(settings.LOGGING))
    config["handlers"]["console"]["stream"] = "ext://sys.stdout"
    logging.config.dictConfig(config)
    handler = logging.getLogger().handlers[0]
    handler.setStream(stream)
    logging.getLogger(logger_name).warning(message, *args)
    logging.config.dictConfig(settings.LOGGING)
    return json.loads(stream.getvalue().strip().splitlines()[-1])


def test_access_log_drops_query_string_and_share_token():
    line = _capture(
        "uvicorn.access",
        '%s - "%s %s HTTP/%s" %d',
        "127.0.0.1:5000",
        "GET",
        "/dicomweb/studies?PatientName=DOE%5EJANE&PatientBirthDate=19700101",
        "1.1",
        200,
    )
    assert "DOE" not in line["message"] and "1970" not in line["message"]
    assert line["message"].endswith('"GET /dicomweb/studies?[redacted] HTTP/1.1" 200')
    assert line["level"] == "WARNING" and "request_id" in line


@pytest.mark.parametrize(
    "raw, leaked",
    [
        ("GET /s/AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-abcd HTTP/1.1", "AbCdEfGh"),
        ("Authorization: Bearer lbx_abcdef0123456789", "lbx_abcdef"),
        ("connect /ws/viewer/ ticket=abc123secret", "abc123secret"),
    ],
)
def test_scrub_removes_tokens(raw, leaked):
    assert leaked not in scrub(raw)


def test_header_values_pydicom_finds_invalid_stay_out_of_the_log():
    """pydicom logs and warns about an invalid header value with the value itself (PHI)."""
    import warnings

    from pydicom.dataset import Dataset

    stream = io.StringIO()
    logging.config.dictConfig(settings.LOGGING)
    logging.captureWarnings(True)  # as Django's logging setup does
    handler = logging.getLogger().handlers[0]
    handler.setStream(stream)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            ds = Dataset()
            ds.PatientBirthDate = "19701399"  # not a date: pydicom warns and logs, value included
    finally:
        logging.config.dictConfig(settings.LOGGING)
    lines = [json.loads(line) for line in stream.getvalue().strip().splitlines()]
    assert any("Invalid value for VR DA: [redacted]" in line["message"] for line in lines), lines
    assert all("19701399" not in line["message"] for line in lines)
