"""lethe.logging masks PII in log records before any handler writes them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from uvicorn.logging import AccessFormatter

from lethe.cli.app import main
from lethe.logging import MaskingFilter, MaskProcessor, install_masking, mask_processor


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing to a string through a masking handler (fields: email, name)."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(MaskingFilter(fields=["email", "full_name"]))
    logger = logging.getLogger("lethe.test.masking")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        yield logger, out
    finally:
        logger.removeHandler(handler)


def test_emails_in_arguments_are_masked(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = captured
    logger.info("reset link sent to %s", "peter.parker@example.com")
    assert out.getvalue() == "reset link sent to p***@example.com\n"


def test_cards_phones_ibans_and_tokens_are_masked(
        captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = captured
    logger.info("card %s phone %s iban %s auth %s", 4111111111111111, "+44 20 7946 0958",
                "DE89 3704 0044 0532 0130 00", "Bearer abcDEF123ghiJKL456")
    text = out.getvalue()
    assert "4111111111111111" not in text and "************1111" in text
    assert "7946" not in text and "+** ** **** **58" in text
    assert "3704 0044" not in text and text.count("DE**") == 1
    assert "abcDEF123" not in text and "Bearer ***" in text


def test_declared_fields_are_masked_by_name(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = captured
    logger.info('payload {"full_name": "Ada Lovelace", "plan": "pro"} full_name=Ada '
                "other_full_name=kept {'full_name': 'Grace Hopper'}")
    text = out.getvalue()
    assert "Ada" not in text and "Lovelace" not in text and "Grace" not in text
    assert '"full_name": "***"' in text and "full_name=***" in text
    assert '"plan": "pro"' in text and "other_full_name=kept" in text


def test_extra_attributes_are_masked() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "login", None, None)
    record.email = "jane@example.com"
    record.note = "call +14155550132"
    record.count = 3
    MaskingFilter(fields=["email"]).filter(record)
    assert (record.email, record.note, record.count) == ("***", "call +*********32", 3)


def test_a_clean_record_is_left_untouched() -> None:
    args = ("runs", 3)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s: %d done", args, None)
    assert MaskingFilter().filter(record) is True
    assert record.msg == "%s: %d done" and record.args is args


def test_tracebacks_are_masked_and_not_rendered_again(
        captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = captured
    try:
        raise ValueError("no account for ann@example.org")
    except ValueError:
        logger.exception("lookup failed")
    text = out.getvalue()
    assert "ann@example.org" not in text
    assert "ValueError: no account for a***@example.org" in text


def test_uvicorn_access_records_keep_their_arguments() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "%s %s HTTP/%s" %d',
                               ("203.0.113.9:5000", "GET", "/v1/requests?email=bo@example.com",
                                "1.1", 200), None)
    MaskingFilter().filter(record)
    assert isinstance(record.args, tuple) and len(record.args) == 5
    line = AccessFormatter("%(client_addr)s %(request_line)s %(status_code)s",
                           use_colors=False).format(record)
    assert "bo@example.com" not in line and "b***@example.com" in line


def test_install_masking_reaches_loggers_and_handlers_once() -> None:
    logger = logging.getLogger("uvicorn.error")
    handler = logging.StreamHandler(io.StringIO())
    logger.addHandler(handler)
    try:
        first = install_masking(fields=["email"])
        second = install_masking(fields=["phone"])
        for target in (logger, handler, logging.getLogger("lethe")):
            masking = [f for f in target.filters if isinstance(f, MaskingFilter)]
            assert masking == [second], target
        assert first is not second
    finally:
        logger.removeHandler(handler)


def test_the_cli_installs_masking_on_lethe_itself(capsys: pytest.CaptureFixture[str]) -> None:
    logger = logging.getLogger("lethe")
    for old in list(logger.filters):
        logger.removeFilter(old)
    with pytest.raises(SystemExit):
        main(["schema"])
    capsys.readouterr()
    assert any(isinstance(f, MaskingFilter) for f in logger.filters)


def test_structlog_processor_masks_events_and_declared_fields() -> None:
    logger = structlog.wrap_logger(
        structlog.ReturnLogger(),
        processors=[structlog.processors.format_exc_info, MaskProcessor(fields=["email"]),
                    structlog.processors.JSONRenderer()])
    line = logger.info("signup from jo@example.com", email="jo@example.com",
                       card="card 4242 4242 4242 4242", attempt=2)
    event = json.loads(line)
    assert event == {"event": "signup from j***@example.com", "email": "***",
                     "card": "card **** **** **** 4242", "attempt": 2}
    assert mask_processor(None, "info", {"event": "x", "nested": {"to": "a@b.example"}}) \
        == {"event": "x", "nested": {"to": "a***@b.example"}}
