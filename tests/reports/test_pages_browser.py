"""The trust pages and a certificate of deletion in a real browser (issue 19): headless
Chromium loads what `lethe docs --evidence` and an erasure wrote, and the DOM holds the
claims a reviewer reads — the evidence beside a promise, the published key's
fingerprint, a certificate's due date and readable times."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from lethe.crypto.signing import load_key, public_pem
from lethe.engine.execute import execute
from lethe.engine.plan import build_plan
from lethe.reports.evidence import rule_evidence
from lethe.reports.trust import write_trust_pages
from lethe.requests.service import open_request, run_request
from tests.fixtures import NOW, build_app, runtime, write_policy
from tests.reports.test_monthly_browser import chromium, run_chromium


def test_chromium_shows_the_evidence_the_key_and_a_certificate(tmp_path: Path) -> None:
    binary = chromium()
    url = f"sqlite:///{tmp_path / 'app.db'}"
    build_app(url)
    policy = write_policy(tmp_path, url)
    rt = runtime(policy, NOW)
    assert execute(rt, build_plan(rt)).ok
    record = open_request(rt, "erasure", "user", ["id=8"])
    run_request(rt, record.id, tmp_path / "out")  # soft-delete
    rt.close()
    rt = runtime(policy, NOW + timedelta(days=21))
    done = run_request(rt, record.id, tmp_path / "out")
    key = load_key(Path(rt.policy.audit.key))
    written = write_trust_pages(rt.policy, rt.clock.now(), tmp_path / "site", "html",
                                public_pem(key), rule_evidence(rt))
    rt.close()
    assert done.certificate is not None
    page = next(p for p in written if p.name == "retention.html")
    dom = run_chromium(binary, tmp_path / "profile", "--dump-dom", page.as_uri())
    text = dom.stdout.decode("utf-8")
    assert dom.returncode == 0 and "Evidence: last verified 01 June 2026" in text
    fingerprint = hashlib.sha256(key.public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)).hexdigest()
    assert fingerprint in text and 'href="organization-key.pem"' in text
    assert "recoverable for 20 days" in text
    shown = run_chromium(binary, tmp_path / "profile2", "--dump-dom",
                         done.certificate.with_suffix(".html").as_uri())
    certificate = shown.stdout.decode("utf-8")
    assert "Yes: completed by the due date" in certificate
    assert "1 July 2026, 00:00 UTC" in certificate  # due 30 days after 1 June
    assert fingerprint in certificate
