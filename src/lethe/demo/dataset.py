"""A synthetic SaaS database that looks like one that never ran a retention job.

The demo only convinces if `lethe plan` finds real work and `lethe run` leaves real
survivors, so every table holds three years of history with activity growing over
time, plus the "live" rows (open sessions, fresh reset tokens, in-flight OAuth
states) that a running product always has. Everything derives from one seeded
`random.Random`, so a (seed, now, scale) triple always yields the same rows, and
tests and screenshots can rely on exact numbers.

The people (lethe.demo.people) come first; this module draws what they did; the rows
go to SQLite in one transaction (lethe.demo.schema).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from lethe.demo.people import (
    DAY,
    DOMAINS,
    HOUR,
    MINUTE,
    YEAR,
    People,
    Row,
    User,
    fmt,
    fmt_opt,
)
from lethe.demo.schema import write_tables

__all__ = ["ORG_WORKSPACE", "build_demo_database"]

ORG_WORKSPACE = "__org__"

_AGENTS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "DemoCoMobile/3.12.0 (Android 14; Pixel 8)",
    "democo-cli/2.4.1 python-httpx/0.27",
)
_PROVIDERS = ("google", "github", "microsoft", "okta")
_SCOPES = ("read", "read write", "read write admin", "webhooks:write", "billing:read")
_HOOKS = ("invoice.paid", "invoice.payment_failed", "customer.updated", "repo.push",
          "calendar.event_created", "crm.contact_updated", "form.submitted")
_AUDIT = ("member.invited", "member.removed", "member.role_changed", "settings.updated",
          "api_key.created", "api_key.revoked", "project.created", "project.deleted",
          "export.downloaded", "sso.configured", "user.login")
_SYSTEM_AUDIT = ("system.backup_completed", "billing.invoice_issued", "system.key_rotated",
                 "retention.job_completed", "system.maintenance")
_EVENTS = ("page_viewed", "project_created", "report_exported", "search_performed",
           "invite_sent", "feature_used", "settings_opened", "dashboard_viewed")
_PAGES = ("/", "/pricing", "/docs", "/blog/retention", "/signup", "/app/projects",
          "/app/reports", "/app/settings")
_METRICS = {"api.requests": 180_000.0, "api.latency_p95_ms": 240.0, "queue.depth": 35.0,
            "db.connections": 60.0, "worker.jobs_processed": 42_000.0}



class _Builder(People):
    """The activity tables: what the people did, drawn from the same clock and dice."""

    # -- security ---------------------------------------------------------------------------

    def build_sessions(self) -> list[Row]:
        rows: list[Row] = []
        for i in range(self.count("sessions")):
            user, at = self.user_event(0.05, 3 * DAY)
            seen = min(at + min(self.rng.expovariate(1 / (6 * HOUR)), 14 * DAY),
                       user.closed or self.now)
            rows.append((i + 1, user.id, user.workspace.id, self.ip(), self.rng.choice(_AGENTS),
                         fmt(at), fmt(seen)))
        return rows

    def build_login_history(self) -> list[Row]:
        rows: list[Row] = []
        for i in range(self.count("login_history")):
            user, at = self.user_event(0.01, DAY)
            ok = 1 if self.rng.random() < 0.93 else 0
            rows.append((i + 1, user.id, user.workspace.id, self.ip(), ok, fmt(at)))
        return rows

    def build_failed_logins(self) -> list[Row]:
        rng, n = self.rng, self.count("failed_logins")
        stamps: list[tuple[float, str, str]] = []
        while len(stamps) < n * 0.3:  # credential-stuffing bursts: one IP, many emails, minutes
            centre, ip = self.grown(self.start, self.now - HOUR), self.ip()
            for _ in range(rng.randint(20, 60)):
                email = f"{rng.choice(('admin', 'info', 'test', 'root', 'sales'))}" \
                        f"{rng.randrange(100)}@{rng.choice(DOMAINS)}"
                stamps.append((centre + rng.random() * 20 * MINUTE, email, ip))
        while len(stamps) < n:  # people mistyping their own password
            user, at = self.user_event(0.03, 2 * DAY)
            stamps.append((at, user.email, self.ip()))
        stamps.sort()
        return [(i + 1, email, ip, fmt(at)) for i, (at, email, ip) in enumerate(stamps[:n])]

    def build_password_reset_tokens(self) -> list[Row]:
        rng = self.rng
        rows: list[Row] = []
        for i in range(self.count("password_reset_tokens")):
            user, at = self.user_event(0.06, 20 * HOUR)
            used = at + rng.uniform(MINUTE, 50 * MINUTE)
            used_at = used if rng.random() < 0.7 and used <= self.now else None
            token_hash = hashlib.sha256(rng.randbytes(32)).hexdigest()
            rows.append((i + 1, user.id, token_hash, fmt(at), fmt(at + HOUR),
                         fmt_opt(used_at)))
        return rows

    def build_oauth_states(self) -> list[Row]:
        rng = self.rng
        rows: list[Row] = []
        for _ in range(self.count("oauth_states")):
            if rng.random() < 0.4:  # linking a provider to a signed-in account
                user, at = self.user_event(0.07, 8 * MINUTE)
                user_id: int | None = user.id
            else:  # sign-in flows have no user yet
                user_id = None
                at = self.recent(8 * MINUTE) if rng.random() < 0.07 else \
                    self.grown(self.start, self.now)
            rows.append((self.hexid(128), user_id, rng.choice(_PROVIDERS), fmt(at)))
        return rows

    def build_access_tokens(self) -> list[Row]:
        rng = self.rng
        rows: list[Row] = []
        for i in range(self.count("access_tokens")):
            user, at = self.user_event(0.03, 7 * DAY)
            expires = at + rng.choices((30, 90, 365), weights=(3, 5, 2))[0] * DAY
            revoked: float | None = None
            if user.closed is not None and user.closed < expires:
                revoked = user.closed  # closing an account revokes its tokens
            elif rng.random() < 0.12:
                revoked = self.grown(at, min(expires, self.now))
            prefix = "lth_" + "".join(rng.choices("ABCDEFGHJKMNPQRSTVWXYZ23456789", k=8))
            rows.append((i + 1, user.id, user.workspace.id, prefix, rng.choice(_SCOPES),
                         fmt(at), fmt(expires), fmt_opt(revoked)))
        return rows

    # -- integrations and logs ----------------------------------------------------------------

    def build_webhook_events(self) -> list[Row]:
        rng, weights = self.rng, [w.weight for w in self.workspaces]
        stamps: list[tuple[float, str, str, str, str]] = []
        for _ in range(self.count("webhook_events")):
            status = rng.choices(("processed", "failed", "pending", "queued"),
                                 weights=(88, 7, 3, 2))[0]
            if rng.random() < 0.04:
                wid, event = ORG_WORKSPACE, rng.choice(("invoice.paid", "customer.updated"))
                lo = self.start
            else:
                ws = rng.choices(self.workspaces, weights=weights)[0]
                wid, event, lo = ws.id, rng.choice(_HOOKS), ws.created
            # Pending and queued events are mostly in flight; the rest are stuck for good.
            in_flight = status in ("pending", "queued") and rng.random() < 0.7
            at = self.recent(2 * DAY) if in_flight else self.grown(lo, self.now)
            payload = json.dumps({"id": f"evt_{self.hexid(64)}", "type": event,
                                  "attempt": 1 if status == "processed" else rng.randint(1, 5),
                                  "data": {"object": f"obj_{self.hexid(32)}"}},
                                 separators=(",", ":"))
            stamps.append((at, wid, event, status, payload))
        stamps.sort()
        return [(i + 1, *s[1:], fmt(s[0])) for i, s in enumerate(stamps)]

    def build_app_logs(self) -> list[Row]:
        rng = self.rng
        stamps: list[tuple[float, str, str, str]] = []
        for _ in range(self.count("app_logs")):
            level = rng.choices(("debug", "info", "warn"), weights=(3, 6, 1))[0]
            if level == "debug":
                message = f"cache miss for project:{rng.randrange(1, 5000)}"
            elif level == "info":
                message = (f"{rng.choice(('GET', 'GET', 'POST', 'PATCH'))} "
                           f"/api/v1/{rng.choice(('projects', 'reports', 'members', 'hooks'))} "
                           f"{rng.choice((200, 200, 201, 204))} in {rng.randint(3, 400)}ms")
            else:
                message = rng.choice((f"slow query ({rng.randint(500, 4000)}ms) on reports",
                                      f"retrying webhook delivery (attempt {rng.randint(2, 5)})",
                                      "rate limit reached for token lth_****"))
            # uuid4 drawn from the seeded rng: real-looking request ids, still reproducible.
            request_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            stamps.append((self.grown(self.start, self.now), level, message, request_id))
        stamps.sort()
        return [(i + 1, lvl, msg, req, fmt(at))
                for i, (at, lvl, msg, req) in enumerate(stamps)]

    def build_error_logs(self) -> list[Row]:
        rng = self.rng
        stamps: list[tuple[float, str, str, int | None]] = []
        for _ in range(self.count("error_logs")):
            user: User | None = None
            if rng.random() < 0.4:
                user, at = self.user_event()
            else:
                at = self.grown(self.start, self.now)
            # Some messages leak an email, as real error logs do: `lethe scan` should notice.
            message = rng.choice((
                "TimeoutError: upstream billing API did not answer in 30s",
                "IntegrityError: duplicate key value violates unique constraint",
                f"ValueError: could not parse date {rng.randint(1, 28)}/13/2024",
                f"PermissionError: user {user.email} may not export reports" if user else
                "KeyError: 'workspace_id'",
            ))
            func = rng.choice(("export_report", "sync_contacts", "deliver_webhook", "charge"))
            stack = (f'Traceback (most recent call last):\n  File "/srv/app/jobs.py", line '
                     f"{rng.randint(20, 900)}, in run\n    {func}(job)\n  File "
                     f'"/srv/app/{func}.py", line {rng.randint(10, 400)}, in {func}\n'
                     f"{message}")
            stamps.append((at, message, stack, user.id if user else None))
        stamps.sort(key=lambda s: s[0])
        return [(i + 1, "error", msg, stack, uid, fmt(at))
                for i, (at, msg, stack, uid) in enumerate(stamps)]

    def build_audit_logs(self) -> list[Row]:
        rng = self.rng
        stamps: list[tuple[float, str, int | None, str, str, str]] = []
        for _ in range(self.count("audit_logs")):
            if rng.random() < 0.85:
                user, at = self.user_event(0.01, DAY)
                action = rng.choice(_AUDIT)
                kind = action.split(".")[0]
                if kind == "member":
                    target = f"user:{rng.choice(user.workspace.members).id}"
                elif kind == "api_key":
                    target = f"api_key:{self.hexid(32)}"
                elif kind == "project":
                    target = f"project:{rng.randrange(1, 5000)}"
                else:
                    target = f"workspace:{user.workspace.id}"
                stamps.append((at, user.workspace.id, user.id, action, target, self.ip()))
            else:
                at = self.grown(self.start, self.now)
                stamps.append((at, ORG_WORKSPACE, None, rng.choice(_SYSTEM_AUDIT), "system",
                               f"10.0.{rng.randrange(8)}.{rng.randrange(2, 250)}"))
        stamps.sort(key=lambda s: s[0])
        return [(i + 1, *s[1:], fmt(s[0])) for i, s in enumerate(stamps)]

    def build_metrics(self) -> list[Row]:
        """Daily rollups (coarser below scale 1): regular, as a metrics pipeline writes them."""
        rng = self.rng
        rows: list[Row] = []
        step = DAY / max(self.scale, 0.01)
        first = self.start - self.start % DAY + DAY
        ticks = int((self.now - first) // step) + 1
        for tick in range(ticks):
            at = first + tick * step
            years_in = (at - self.start) / YEAR
            weekly = 0.75 if time.gmtime(int(at)).tm_wday >= 5 else 1.0
            for name, base in _METRICS.items():
                trend = 2.0 ** years_in if not name.endswith("_ms") else 1.0
                value = round(base * trend * weekly * rng.uniform(0.85, 1.15), 2)
                rows.append((len(rows) + 1, name, value, fmt(at)))
        return rows

    def build_analytics_events(self) -> list[Row]:
        rng = self.rng
        stamps: list[tuple[float, int | None, str, str, str | None, str]] = []
        for _ in range(self.count("analytics_events")):
            if rng.random() < 0.7:
                user, at = self.user_event(0.01, DAY)
                uid, wid = user.id, user.workspace.id
                event = rng.choice(_EVENTS)
                props: dict[str, str | None] = {"path": rng.choice(_PAGES[5:]),
                                                "plan": rng.choice(("team", "business"))}
            else:  # the marketing site: visitors with no account, logged at the org level
                at, uid, wid = self.grown(self.start, self.now), None, ORG_WORKSPACE
                event = rng.choice(("page_viewed", "page_viewed", "signup_started"))
                props = {"path": rng.choice(_PAGES[:5]),
                         "utm_source": rng.choice(("newsletter", "search", "partner", None))}
            ip = self.ip() if rng.random() < 0.85 else None
            stamps.append((at, uid, wid, event, ip, json.dumps(props, separators=(",", ":"))))
        stamps.sort(key=lambda s: s[0])
        return [(i + 1, *s[1:], fmt(s[0])) for i, s in enumerate(stamps)]

    def build_invoices(self) -> list[Row]:
        """Monthly invoices to each workspace's owner until the owner closes the account."""
        rng = self.rng
        stamps: list[tuple[float, int, str, int, str, float | None]] = []
        for ws in self.workspaces:
            owner = min(ws.members, key=lambda u: u.created)
            joined = sorted(u.created for u in ws.members)
            seat_cents = rng.choice((800, 1200, 2000))
            currency = "EUR" if ws.region == "eu" else "USD"
            year, month = time.gmtime(int(ws.created))[:2]
            while True:
                year, month = (year + 1, 1) if month == 12 else (year, month + 1)
                issued = datetime(year, month, 1, 6, tzinfo=UTC).timestamp()
                if issued > self.now or (owner.closed is not None and issued > owner.closed):
                    break
                seats = max(1, bisect.bisect_right(joined, issued))
                paid = issued + rng.uniform(HOUR, 12 * DAY)
                paid_at = paid if paid <= self.now and rng.random() < 0.97 else None
                stamps.append((issued, owner.id, ws.id, seats * seat_cents, currency, paid_at))
        stamps.sort(key=lambda s: (s[0], s[2]))
        rows: list[Row] = []
        for i, (issued, uid, wid, cents, currency, paid_at) in enumerate(stamps, start=1):
            number = f"INV-{time.strftime('%Y%m', time.gmtime(int(issued)))}-{i:06d}"
            rows.append((i, uid, wid, number, cents, currency, fmt(issued), fmt_opt(paid_at)))
        return rows


def build_demo_database(path: Path, now: datetime, *, seed: int = 7,
                        scale: float = 1.0) -> dict[str, int]:
    """Create (overwrite) a SQLite database at `path` with synthetic data spanning the three
    years before `now`; return row counts per table.

    Overwriting (rather than appending) keeps `lethe demo` repeatable: the same arguments
    always give the same database, so a replayed run with `--now` gives the same plan.
    A naive `now` is taken as UTC.
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    builder = _Builder(now, seed, scale)
    tables: dict[str, list[Row]] = {}
    tables["workspaces"] = builder.build_workspaces()
    tables["users"] = builder.build_users()
    for name in ("sessions", "login_history", "failed_logins", "password_reset_tokens",
                 "oauth_states", "access_tokens", "webhook_events", "app_logs", "error_logs",
                 "audit_logs", "metrics", "analytics_events", "invoices"):
        tables[name] = getattr(builder, f"build_{name}")()

    write_tables(Path(path), tables)
    return {name: len(rows) for name, rows in tables.items()}
