"""The leak check itself can fail: a registered secret in a record or an error is a hit."""

from __future__ import annotations

import logging

from better_auth import APIError
from tests._leaks import LeakScan, RecordCollector, error_texts


def test_a_secret_in_a_log_record_is_found() -> None:
    scan = LeakScan()
    scan.register("eyJ.secret-token.value", "short")
    collector = RecordCollector()
    logger = logging.getLogger("better_auth_obo.leak-self-test")
    logger.addHandler(collector)
    try:
        logger.warning("oops %s", "eyJ.secret-token.value")
    finally:
        logger.removeHandler(collector)
    for text in collector.texts:
        scan.scan("log record", text)
    assert len(scan.hits) == 1
    assert "eyJ.se" in scan.hits[0]
    assert "short" not in scan.secrets  # too short to register


def test_a_secret_in_an_error_cause_is_found() -> None:
    scan = LeakScan()
    scan.register("client-secret-value-xyz")
    try:
        try:
            raise ValueError("client-secret-value-xyz")
        except ValueError as inner:
            raise APIError(500, "X", "nothing here") from inner
    except APIError as error:
        scan.scan("error", error_texts(error))
    assert len(scan.hits) == 1
