"""`check`: the policy against the live stores, the trust pages' sentences against what
is enforced, and rules' oldest rows against the deletion SLA."""

from __future__ import annotations

from datetime import timedelta

from lethe.catalog import Finding
from lethe.governance.check import CheckReport, check
from lethe.reports.ages import data_ages
from lethe.reports.trust import trust_pages
from lethe.reports.trust_claims import unbacked
from lethe.runtime import Runtime


def check_policy(rt: Runtime) -> CheckReport:
    """Every check of the policy against the live stores, residency included (it needs
    the control store's region preferences and transfers), and, with a `deletion_sla`,
    the age of every rule's oldest row nothing keeps."""
    report = check(rt.catalog, rt.audit, rt.clock.now(), rt.control)
    findings = [*report.findings, *claim_findings(rt)]
    if rt.policy.deletion_sla is not None and report.ok:
        findings += sla_findings(rt)
    return CheckReport(tuple(findings))


def claim_findings(rt: Runtime) -> list[Finding]:
    """Sentences the trust pages would publish that no enforced setting backs."""
    claims = trust_pages(rt.policy, rt.clock.now()).claims
    return [Finding("error", "page-claim", source or claim.page,
                    f"the {claim.page} page would say {claim.text[:80]!r} with nothing the "
                    f"policy enforces behind it ({source or 'no source'})")
            for claim, source in unbacked(rt.policy, claims)]


def sla_findings(rt: Runtime) -> list[Finding]:
    """Rules whose oldest row (held and blocked rows aside: exceptions with a reason)
    outlived its limit by more than the policy's `deletion_sla`."""
    now, sla = rt.clock.now(), rt.policy.deletion_sla
    found = []
    for reading in data_ages(rt):
        cutoff = reading.limit.before(now)
        if reading.error or reading.oldest is None or cutoff is None:
            continue
        late = (cutoff - reading.grace) - reading.oldest
        if late > timedelta(0):
            where = f"datasets.{reading.dataset}." + (
                "soft_delete" if reading.rule is None else f"retention[{reading.rule}]")
            found.append(Finding(
                "error", "deletion-sla", where,
                f"the oldest {reading.action} row is {_days(late)} past its {reading.limit} "
                f"limit and the {sla} deletion SLA (held and blocked rows aside)"))
    return found


def _days(span: timedelta) -> str:
    days = span.total_seconds() / 86400
    return f"{days:.1f} days" if days < 10 else f"{days:.0f} days"


__all__ = ["CheckReport", "check_policy", "claim_findings", "sla_findings"]
