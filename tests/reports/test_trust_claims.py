"""Every statement the trust pages publish is true, and carries its evidence (issue 19,
item 1): each sentence is a claim citing the enforced facts it states, no claim about a
dataset cites another dataset's rule, and the untrue sentences a security reviewer found
on real pages are gone."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lethe.policy.load import load_policy
from lethe.policy.model import Policy
from lethe.reports.trust import render, trust_pages
from lethe.reports.trust_claims import Claim, unbacked
from lethe.reports.trust_wording import starting_point
from lethe.text import counted

NOW = datetime(2026, 6, 1, tzinfo=UTC)
DEMO = Path(str(files("lethe.demo") / "policy.yaml"))


def _check_claims(policy: Policy, claims: tuple[Claim, ...]) -> None:
    """Every claim cites facts the policy sets; a claim about one dataset cites no other
    dataset's rule; every rule of every dataset is stated exactly once on the retention
    page, and every dataset without one says so there."""
    assert unbacked(policy, claims) == []
    for claim in claims:
        assert claim.sources, claim
        for source in claim.sources:
            if claim.dataset is not None and ".retention" in source:
                assert source.startswith(f"datasets.{claim.dataset}."), (source, claim)
    retention = [c for c in claims if c.page == "retention"]
    for name, ds in policy.datasets.items():
        for index in range(len(ds.retention)):
            path = f"datasets.{name}.retention[{index}]"
            stating = [c for c in retention if path in c.sources and c.dataset == name
                       and not c.text.startswith(("Kept", "Deleted", "Anonymised"))]
            assert len(stating) == 1, (path, stating)
        if not ds.retention:
            assert any(c.dataset == name and "no retention period applies" in c.text
                       for c in retention), name


def test_the_demo_pages_are_claims_each_citing_what_enforces_it() -> None:
    policy = load_policy(DEMO)
    pages = trust_pages(policy, NOW)
    _check_claims(policy, pages.claims)
    text = " ".join(render(pages, "markdown").values())
    for claim in pages.claims:  # every claim is on its page
        assert claim.text.split(":")[0][:40].replace("_", r"\_") in text or \
            claim.text[:40] in text, claim


def _policy(tmp_path: Path, datasets: dict[str, Any], **extra: Any) -> Policy:
    path = tmp_path / "lethe.yaml"
    path.write_text(yaml.safe_dump({
        "lethe": 1, "organization": "Shop", "control": "sqlite:///state.db",
        "stores": {"app": {"url": "sqlite:///app.db"}},
        "subjects": {"user": {"dataset": "users", "identities": ["email"]}},
        "datasets": {"users": {"store": "app", "table": "users", "class": "pii",
                               "fields": {"email": {"class": "pii", "anonymize": "mask-email"}},
                               "soft_delete": {"column": "deleted_at", "recover_for": "14d"},
                               "retention": [{"keep": "90d", "after": "closed_at",
                                              "action": "soft-delete"}]},
                     **datasets}, **extra}))
    return load_policy(path)


def test_the_sentences_a_reviewer_found_untrue_are_gone(tmp_path: Path) -> None:
    policy = _policy(tmp_path, {
        # a lookup table: no rule, nobody's
        "countries": {"store": "app", "table": "countries", "class": "operational"},
        # a personal field in a dataset no rule limits: not "kept for 90 days"
        "contacts": {"store": "app", "table": "contacts", "class": "operational",
                     "fields": {"phone": {"class": "pii", "anonymize": "redact"}}},
        # fields with anonymizers that nothing ever runs
        "addresses": {"store": "app", "table": "addresses", "class": "pii",
                      "fields": {"street": {"class": "pii", "anonymize": "redact"}}},
        # retained rows that refer to accounts keep them (scrubbed)
        "invoices": {"store": "app", "table": "invoices", "class": "operational",
                     "belongs_to": {"users": "user_id"}, "erasure": "retain",
                     "legal_basis": "tax law",
                     "retention": [{"keep": "7y", "after": "issued_at"}]},
        # per-person derived data
        "segments": {"store": "app", "table": "segments", "class": "derived",
                     "belongs_to": {"users": "user_id"},
                     "retention": [{"keep": "30d", "after": "return_date"}]}})
    pages = trust_pages(policy, NOW)
    _check_claims(policy, pages.claims)
    said = {c.dataset: c.text for c in pages.claims
            if c.page == "retention" and "no retention period" in c.text}
    assert "when you ask" not in said["countries"] and "deleted" not in said["countries"]
    assert "when you ask" not in said["addresses"]  # nobody's: no request reaches it
    classification = [c.text for c in pages.claims if c.page == "classification"]
    kept = [t for t in classification if ": kept for" in t
            and not t.startswith("No retention period")]
    assert kept and all("Contacts" not in t for t in kept)
    assert any(t.startswith("No retention period applies to") and "Contacts" in t
               for t in classification)
    anonymised = [t for t in classification if t.startswith("When personal data is")]
    assert all("Addresses" not in t for t in anonymised)
    erasure = {row.data: row.outcome for row in pages.erasure}
    assert erasure["User accounts"].startswith(
        "Deactivated at once and recoverable for 14 days, then deleted")
    assert "records we must keep (invoices)" in erasure["User accounts"]
    derived = next(c for c in pages.classes if c.key == "derived")
    assert "no record of an individual" not in derived.meaning
    assert any("after the return date," in c.text for c in pages.claims)


def test_words_read_as_written() -> None:
    assert starting_point("return_date") == "the return date"
    assert starting_point("closed_at") == "account closure"
    assert starting_point("shipped_at") == "the shipped date"
    assert counted(1, "signed checkpoint") == "1 signed checkpoint"
    assert counted(2, "entry", "entries") == "2 entries"


def test_an_account_kind_reads_accounts(tmp_path: Path) -> None:
    policy = _policy(tmp_path, {}, subjects={"account": {"dataset": "users",
                                                         "identities": ["email"]}})
    rows = {row.data for row in trust_pages(policy, NOW).erasure}
    assert "Accounts" in rows and not any("Account accounts" in r for r in rows)


_NAMES = st.sampled_from(["orders", "events", "notes", "tokens", "scores", "logs"])
_RULES = st.lists(st.fixed_dictionaries({
    "keep": st.sampled_from(["30d", "12mo", "7y", "forever", "24h"]),
    "after": st.sampled_from(["created_at", "return_date", "last_seen_at"]),
    "action": st.sampled_from(["delete", "anonymize", "archive-less"])}), max_size=3)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(_NAMES, st.tuples(
    st.sampled_from(["pii", "behavioral", "operational", "derived"]), _RULES,
    st.booleans(), st.sampled_from(["delete", "anonymize", "retain"])), max_size=5))
def test_every_rule_of_any_policy_is_one_claim_with_its_sources(
        tmp_path: Path, spec: dict[str, Any]) -> None:
    datasets: dict[str, Any] = {}
    for name, (cls, rules, linked, erasure) in spec.items():
        ds: dict[str, Any] = {"store": "app", "table": name, "class": cls,
                              "fields": {"note": {"class": "pii", "anonymize": "redact"}},
                              "erasure": erasure}
        if erasure == "retain":
            ds["legal_basis"] = "a law"
        if linked:
            ds["belongs_to"] = {"users": "user_id"}
        ds["retention"] = [{"keep": r["keep"], "after": r["after"],
                            **({"action": "anonymize"} if r["action"] == "anonymize" else {}),
                            **({"when": {"kind": str(i)}} if i < len(rules) - 1 else {})}
                           for i, r in enumerate(rules)]
        datasets[name] = ds
    policy = _policy(tmp_path, datasets)
    _check_claims(policy, trust_pages(policy, NOW).claims)


def test_docs_evidence_puts_what_backs_each_rule_beside_it(tmp_path: Path) -> None:
    """Issue 19, item 2: with `--evidence`, each retention claim carries the last run
    that verified it, the oldest record against the period and the deletion lag."""
    import json
    import subprocess
    import sys
    from datetime import timedelta

    from lethe.engine.execute import execute
    from lethe.engine.plan import build_plan
    from tests.fixtures import build_app, runtime, write_policy

    url = f"sqlite:///{tmp_path / 'app.db'}"
    build_app(url)
    policy = write_policy(tmp_path, url)
    rt = runtime(policy, NOW)
    assert execute(rt, build_plan(rt)).ok
    rt.close()
    proc = subprocess.run(
        [sys.executable, "-c", "from lethe.cli.app import main; main()", "docs", "--evidence",
         "--policy", str(policy), "--out", str(tmp_path / "site"), "--json",
         "--now", (NOW + timedelta(days=1)).isoformat()],
        capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    claims = json.loads(proc.stdout)["claims"]
    [sessions] = [c for c in claims if c["dataset"] == "sessions" and c["page"] == "retention"
                  and "datasets.sessions.retention[0]" in c["sources"]
                  and c["text"].startswith("We keep")]
    assert sessions["evidence"] == ("last verified 01 June 2026; oldest record 2 of 30 days; "
                                    "removed within 30.0 days of the end of its period "
                                    "(longest 30.0 days, last 30 days)")
    page = (tmp_path / "site" / "retention.html").read_text(encoding="utf-8")
    assert "Evidence: last verified 01 June 2026" in page
    bare = json.loads(subprocess.run(
        [sys.executable, "-c", "from lethe.cli.app import main; main()", "docs",
         "--policy", str(policy), "--out", str(tmp_path / "bare"), "--json"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120).stdout)["claims"]
    assert all(c["evidence"] is None for c in bare)  # without the flag: the policy alone


def test_check_reports_a_claim_nothing_enforces(tmp_path: Path) -> None:
    """Issue 19, item 3: a sentence whose source the policy does not set is a finding."""
    policy = _policy(tmp_path, {})
    made_up = Claim("retention", "We keep orders for 10 years.", ("datasets.orders.retention[0]",),
                    "orders")
    empty = Claim("classification", "Anonymised.", ("datasets.users.legal_basis",), "users")
    assert [source for _, source in unbacked(policy, [made_up, empty])] == [
        "datasets.orders.retention[0]", "datasets.users.legal_basis"]
    assert unbacked(policy, trust_pages(policy, NOW).claims) == []


def test_evidence_never_says_no_record_is_old_when_the_store_did_not_answer() -> None:
    from lethe.reports.evidence import RuleEvidence

    unanswered = RuleEvidence(None, None, 30.0, None, None, measured=False).text()
    assert "not measured" in unanswered and "no record older" not in unanswered
    assert "no record older than the period" in RuleEvidence(None, None, 30.0, None,
                                                             None).text()


def test_a_termination_is_stated_in_the_policy_s_terms_only_when_declared(
        tmp_path: Path) -> None:
    tenant = {"events": {"store": "app", "table": "events", "class": "pii",
                         "workspace": "workspace_id",
                         "fields": {"ip": {"class": "pii", "anonymize": "redact"}},
                         "retention": [{"keep": "30d", "after": "received_at"}]}}
    declared = _policy(tmp_path, tenant,
                       termination={"within": "90d", "recover_for": "30d"})
    pages = trust_pages(declared, NOW)
    _check_claims(declared, pages.claims)
    said = [c for c in pages.claims if c.text.startswith("When a workspace is terminated")]
    assert len(said) == 1
    assert "erased within 90 days of the request" in said[0].text
    assert "for the first 30 days it can be cancelled" in said[0].text
    assert said[0].sources[:2] == ("termination.within", "termination.recover_for")
    (tmp_path / "plain").mkdir()
    plain = _policy(tmp_path / "plain", tenant)
    assert not any("terminated" in c.text for c in trust_pages(plain, NOW).claims)
