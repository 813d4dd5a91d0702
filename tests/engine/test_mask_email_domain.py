"""`anonymize: mask-email-domain` (issue 23, item 5): nothing of the local part stays,
the rewrite is verified, and a second run finds nothing to do."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from lethe.engine.anonymize import mask_email, mask_email_domain
from lethe.engine.execute import execute
from lethe.engine.plan import build_plan
from lethe.policy.load import load_policy
from lethe.reports.trust_wording import field_treatment
from tests.fixtures import analytics, build_app, days_ago, runtime, write_policy


def test_the_mask_keeps_only_the_domain() -> None:
    assert mask_email_domain("peter.parker@example.com") == "***@example.com"
    assert mask_email("peter.parker@example.com") == "p***@example.com"  # unchanged
    assert mask_email_domain("no at sign") == "***"
    assert mask_email_domain("***@example.com") == "***@example.com"  # once only
    assert mask_email_domain(None) is None


@pytest.fixture
def policy(app_url: str, tmp_path: Path) -> Path:
    engine = build_app(app_url)
    with engine.begin() as conn:  # an old value that is no address at all
        conn.execute(analytics.insert(), [{"id": 99, "ip": "203.0.113.99",
                                           "email": "not an email", "occurred_at":
                                           days_ago(600)}])
    engine.dispose()
    return write_policy(tmp_path, app_url,
                        datasets__analytics__fields__email__anonymize="mask-email-domain")


def test_a_run_masks_due_rows_to_their_domain_and_a_second_finds_nothing(
        policy: Path, app_url: str) -> None:
    rt = runtime(policy)
    try:
        step = next(a for a in build_plan(rt, ["analytics"]).actions)
        assert step.rows == 26  # 25 rows 500 days old and the one 600 days old
        result = execute(rt, build_plan(rt, ["analytics"]))
        assert all(a.verified for a in result.actions)
        again = next(a for a in build_plan(rt, ["analytics"]).actions)
    finally:
        rt.close()
    assert again.rows == 0
    engine = sa.create_engine(app_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        emails = dict(conn.execute(sa.select(analytics.c.id, analytics.c.email)).all())
    engine.dispose()
    assert all(emails[i] == "***@example.org" for i in range(1, 51, 2))  # 500 days old
    assert all(emails[i] == f"a{i}@example.org" for i in range(2, 51, 2))  # 100: kept
    assert emails[99] == "***"


def test_the_trust_page_says_what_is_left(policy: Path) -> None:
    loaded = load_policy(policy)
    assert loaded.datasets["analytics"].fields["email"].anonymize == "mask-email-domain"
    assert field_treatment("mask-email-domain") == "masked to the domain (***@example.com)"
