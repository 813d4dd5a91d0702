"""A synthetic SaaS database that looks like one that never ran a retention job.

The demo only convinces if `lethe plan` finds real work and `lethe run` leaves real
survivors, so every table holds three years of history with activity growing over
time, plus the "live" rows (open sessions, fresh reset tokens, in-flight OAuth
states) that a running product always has. Everything derives from one seeded
`random.Random`, so a (seed, now, scale) triple always yields the same rows, and
tests and screenshots can rely on exact numbers.

Personal data is fake by construction: names are recombined common given and family
names, emails use the reserved example.* domains, phone numbers come from the
ranges reserved for fiction, and IP addresses from the documentation blocks.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import math
import random
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["ORG_WORKSPACE", "build_demo_database"]

ORG_WORKSPACE = "__org__"

MINUTE = 60
HOUR = 3_600
DAY = 86_400
YEAR = 365.25 * DAY
# Usage doubles every year: old data is thinner than recent data, as in a growing product.
_GROWTH = math.log(2.0) / YEAR

Row = tuple[object, ...]

_TABLES = """
CREATE TABLE workspaces (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, region TEXT NOT NULL CHECK (region IN ('us', 'eu')),
  created_at TEXT NOT NULL);
CREATE TABLE users (
  id INTEGER PRIMARY KEY, workspace_id TEXT NOT NULL REFERENCES workspaces(id),
  email TEXT NOT NULL UNIQUE, display_name TEXT NOT NULL, phone TEXT, created_at TEXT NOT NULL,
  last_login_at TEXT, closed_at TEXT, deleted_at TEXT);
CREATE TABLE sessions (
  id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),
  workspace_id TEXT NOT NULL, ip_address TEXT, user_agent TEXT, created_at TEXT NOT NULL,
  last_seen_at TEXT NOT NULL);
CREATE TABLE login_history (
  id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),
  workspace_id TEXT NOT NULL, ip_address TEXT, succeeded INTEGER NOT NULL,
  created_at TEXT NOT NULL);
CREATE TABLE failed_logins (
  id INTEGER PRIMARY KEY, email_attempted TEXT NOT NULL, ip_address TEXT,
  created_at TEXT NOT NULL);
CREATE TABLE password_reset_tokens (
  id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),
  token_hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, expires_at TEXT NOT NULL,
  used_at TEXT);
CREATE TABLE oauth_states (
  id TEXT PRIMARY KEY, user_id INTEGER REFERENCES users(id), provider TEXT NOT NULL,
  created_at TEXT NOT NULL);
CREATE TABLE access_tokens (
  id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),
  workspace_id TEXT NOT NULL, token_prefix TEXT NOT NULL, scopes TEXT NOT NULL,
  created_at TEXT NOT NULL, expires_at TEXT NOT NULL, revoked_at TEXT);
CREATE TABLE webhook_events (
  id INTEGER PRIMARY KEY, workspace_id TEXT NOT NULL, event_type TEXT NOT NULL,
  status TEXT NOT NULL, payload TEXT NOT NULL, received_at TEXT NOT NULL);
CREATE TABLE app_logs (
  id INTEGER PRIMARY KEY, level TEXT NOT NULL, message TEXT NOT NULL, request_id TEXT,
  created_at TEXT NOT NULL);
CREATE TABLE error_logs (
  id INTEGER PRIMARY KEY, level TEXT NOT NULL, message TEXT NOT NULL, stack TEXT,
  user_id INTEGER REFERENCES users(id), created_at TEXT NOT NULL);
CREATE TABLE audit_logs (
  id INTEGER PRIMARY KEY, workspace_id TEXT NOT NULL,
  actor_user_id INTEGER, action TEXT NOT NULL, target TEXT, ip_address TEXT,
  created_at TEXT NOT NULL);
CREATE TABLE metrics (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL, value REAL NOT NULL, recorded_at TEXT NOT NULL);
CREATE TABLE analytics_events (
  id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id), workspace_id TEXT NOT NULL,
  event_name TEXT NOT NULL, ip_address TEXT, properties TEXT NOT NULL, occurred_at TEXT NOT NULL);
CREATE TABLE invoices (
  id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),
  workspace_id TEXT NOT NULL, number TEXT NOT NULL UNIQUE, amount_cents INTEGER NOT NULL,
  currency TEXT NOT NULL, issued_at TEXT NOT NULL, paid_at TEXT);
"""
# audit_logs.actor_user_id deliberately has no FOREIGN KEY: the audit trail outlives the
# accounts it mentions (7 years against a 90-day purge), and the id is kept as history.

# Every *_id column (cascades walk them) and every retention `after` column (plans scan
# them); without these, purging a parent costs a table scan per child.
_INDEXES = {
    "users": ["workspace_id", "closed_at", "deleted_at"],
    "sessions": ["user_id", "workspace_id", "last_seen_at"],
    "login_history": ["user_id", "workspace_id", "created_at"],
    "failed_logins": ["created_at"],
    "password_reset_tokens": ["user_id", "created_at"],
    "oauth_states": ["user_id", "created_at"],
    "access_tokens": ["user_id", "workspace_id", "expires_at"],
    "webhook_events": ["workspace_id", "status, received_at", "received_at"],
    "app_logs": ["request_id", "created_at"],
    "error_logs": ["user_id", "created_at"],
    "audit_logs": ["workspace_id", "actor_user_id", "created_at"],
    "metrics": ["name", "recorded_at"],
    "analytics_events": ["user_id", "workspace_id", "occurred_at"],
    "invoices": ["user_id", "workspace_id", "issued_at"],
}

# Base row counts at scale 1.0; metrics and invoices follow from time and workspaces.
_BASE = {
    "workspaces": 40, "users": 2_000, "sessions": 6_000, "login_history": 12_000,
    "failed_logins": 3_000, "password_reset_tokens": 800, "oauth_states": 600,
    "access_tokens": 1_500, "webhook_events": 8_000, "app_logs": 12_000, "error_logs": 2_000,
    "audit_logs": 6_000, "analytics_events": 12_000,
}

_FIRST = (
    "Ada", "Alan", "Amara", "Ana", "Ben", "Carla", "Chen", "Dana", "Diego", "Elif", "Emma",
    "Farah", "Felix", "Grace", "Hana", "Ian", "Ines", "Jonas", "Kai", "Lara", "Leo", "Lina",
    "Luca", "Maya", "Mei", "Nadia", "Noah", "Omar", "Priya", "Rafael", "Rosa", "Sam", "Sofia",
    "Tariq", "Theo", "Uma", "Vera", "Wei", "Yara", "Zoe",
)
_LAST = (
    "Abbott", "Alvarez", "Berg", "Brandt", "Castillo", "Chandra", "Dubois", "Ekman", "Fischer",
    "Garcia", "Haddad", "Hansen", "Ito", "Jensen", "Kaur", "Keller", "Kowalski", "Larsen",
    "Lopez", "Moreau", "Nakamura", "Novak", "Okafor", "Olsen", "Patel", "Quinn", "Rossi",
    "Santos", "Schmidt", "Silva", "Tanaka", "Torres", "Vogel", "Walsh", "Weber", "Xu", "Yilmaz",
    "Zhang",
)
_DOMAINS = ("example.com", "example.org", "example.net")
_WS_A = (
    "Northwind", "Blue", "Copper", "Quiet", "Bright", "Little", "Iron", "Silver", "Harbor",
    "Maple", "Cedar", "Polar", "Granite", "Lumen", "Orbit", "Sunny",
)
_WS_B = (
    "Labs", "Studio", "Logistics", "Health", "Analytics", "Foods", "Partners", "Robotics",
    "Media", "Works", "Bank", "Travel", "Systems", "Collective",
)
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


def _fmt(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(ts)))


def _fmt_opt(ts: float | None) -> str | None:
    return None if ts is None else _fmt(ts)


@dataclass
class _Workspace:
    id: str
    name: str
    region: str
    created: float
    weight: float
    members: list[_User] = field(default_factory=list)


@dataclass
class _User:
    workspace: _Workspace
    email: str
    name: str
    phone: str | None
    created: float
    closed: float | None
    id: int = 0


class _Builder:
    """Holds the shared state (clock, rng, people) that makes rows of different tables agree."""

    def __init__(self, now: datetime, seed: int, scale: float) -> None:
        now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
        try:
            start = now.replace(year=now.year - 3)
        except ValueError:  # 29 February
            start = now.replace(year=now.year - 3, day=28)
        self.now = now.timestamp()
        self.start = start.timestamp()
        self.rng = random.Random(seed)
        self.scale = scale
        self.workspaces: list[_Workspace] = []
        self.users: list[_User] = []
        self.active: list[_User] = []
        self.active_created: list[float] = []
        self.users_created: list[float] = []

    def count(self, table: str) -> int:
        return max(3, round(_BASE[table] * self.scale))

    def grown(self, lo: float, hi: float) -> float:
        """An instant in [lo, hi] whose density grows with usage (inverse-CDF sampling)."""
        if hi <= lo:
            return hi
        u = self.rng.random()
        return lo + math.log1p(u * math.expm1(_GROWTH * (hi - lo))) / _GROWTH

    def recent(self, window: float) -> float:
        return self.now - self.rng.random() * window

    def hexid(self, bits: int) -> str:
        return f"{self.rng.getrandbits(bits):0{bits // 4}x}"

    def ip(self) -> str:
        rng = self.rng
        if rng.random() < 0.1:
            return f"2001:db8:{rng.randrange(0x10000):x}::{rng.randrange(1, 0x10000):x}"
        block = rng.choice(("192.0.2", "198.51.100", "203.0.113"))
        return f"{block}.{rng.randrange(1, 255)}"

    def user_event(self, live_share: float = 0.0, window: float = DAY) -> tuple[_User, float]:
        """A (user, instant) pair with the user signed up and not yet closed at that instant.

        The instant is drawn first and the user second, so activity follows the product's
        growth once, instead of compounding it with each user's own lifetime.
        """
        rng = self.rng
        if live_share and rng.random() < live_share:
            at = self.recent(window)
            eligible = bisect.bisect_right(self.active_created, at)
            if eligible:
                return self.active[rng.randrange(eligible)], at
        at = self.grown(self.start, self.now)
        eligible = bisect.bisect_right(self.users_created, at)
        for _ in range(20):
            user = self.users[rng.randrange(eligible)] if eligible else self.users[0]
            if user.closed is None or user.closed >= at:
                return user, max(at, user.created)
        user = self.active[rng.randrange(len(self.active))]
        return user, max(at, user.created)

    # -- people ---------------------------------------------------------------------------

    def build_workspaces(self) -> list[Row]:
        rng, n = self.rng, self.count("workspaces")
        ids: set[str] = set()
        for i in range(n):
            wid = "ws_" + "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=6))
            while wid in ids:
                wid = "ws_" + "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=6))
            ids.add(wid)
            if i == 0:  # the first customer signed up the day the history begins
                created = self.start + HOUR
            elif i < max(2, n // 5):  # early adopters
                created = self.start + rng.random() * 60 * DAY
            else:
                created = self.grown(self.start, self.now - 14 * DAY)
            name = f"{rng.choice(_WS_A)} {rng.choice(_WS_B)}"
            region = "eu" if rng.random() < 0.25 else "us"
            self.workspaces.append(_Workspace(wid, name, region, created,
                                              rng.paretovariate(1.5)))
        self.workspaces.sort(key=lambda w: w.created)
        return [(w.id, w.name, w.region, _fmt(w.created)) for w in self.workspaces]

    def _phone(self, region: str) -> str | None:
        if self.rng.random() < 0.3:
            return None
        if region == "eu":  # Ofcom's range reserved for drama
            return f"+44 7700 900{self.rng.randrange(1000):03d}"
        area = self.rng.choice(("202", "312", "415", "512"))
        return f"+1 {area}-555-01{self.rng.randrange(100):02d}"  # 555-0100..0199: fiction

    def build_users(self) -> list[Row]:
        rng, now = self.rng, self.now
        taken: set[str] = set()
        n = max(self.count("users"), 2 * len(self.workspaces))
        opened = [w.created for w in self.workspaces]
        cum_weights = list(itertools.accumulate(w.weight for w in self.workspaces))
        for index in range(n):
            is_owner = index < len(self.workspaces)
            if is_owner:
                ws = self.workspaces[index]
                created = ws.created + rng.random() * HOUR
            else:  # sign-ups grow with the product; a newcomer joins an existing workspace
                created = self.grown(self.start, now)
                k = max(1, bisect.bisect_right(opened, created))
                ws = rng.choices(self.workspaces[:k], cum_weights=cum_weights[:k])[0]
                created = max(created, ws.created + HOUR)
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            local = rng.choice((f"{first}.{last}", f"{first[0]}{last}", f"{first}{last[0]}"))
            local, suffix = local.lower(), 1
            email = f"{local}@{rng.choice(_DOMAINS)}"
            while email in taken:
                suffix += 1
                email = f"{local}{suffix}@{rng.choice(_DOMAINS)}"
            taken.add(email)
            closed = None
            if rng.random() < (0.08 if is_owner else 0.16) and created + DAY < now:
                closed = created + DAY + rng.random() * (now - created - DAY)
            user = _User(ws, email, f"{first} {last}", self._phone(ws.region), created, closed)
            ws.members.append(user)
            self.users.append(user)
        self.users.sort(key=lambda u: u.created)  # ids follow sign-up order, like a sequence
        for uid, user in enumerate(self.users, start=1):
            user.id = uid
        self.active = [u for u in self.users if u.closed is None]
        self.active_created = [u.created for u in self.active]
        self.users_created = [u.created for u in self.users]
        rows: list[Row] = []
        for u in self.users:
            end = u.closed or now
            last_login = None if rng.random() < 0.03 else max(u.created,
                                                              end - rng.expovariate(1 / (6 * DAY)))
            # Earlier retention runs soft-deleted most accounts closed long enough ago; some
            # of those are past the 30-day recovery window, so the demo run purges them.
            deleted = None
            if u.closed is not None and u.closed + 90 * DAY < now and (u.id * 2654435761) % 5:
                deleted = u.closed + 90 * DAY
            rows.append((u.id, u.workspace.id, u.email, u.name, u.phone, _fmt(u.created),
                         _fmt_opt(last_login), _fmt_opt(u.closed), _fmt_opt(deleted)))
        return rows

    # -- security ---------------------------------------------------------------------------

    def build_sessions(self) -> list[Row]:
        rows: list[Row] = []
        for i in range(self.count("sessions")):
            user, at = self.user_event(0.05, 3 * DAY)
            seen = min(at + min(self.rng.expovariate(1 / (6 * HOUR)), 14 * DAY),
                       user.closed or self.now)
            rows.append((i + 1, user.id, user.workspace.id, self.ip(), self.rng.choice(_AGENTS),
                         _fmt(at), _fmt(seen)))
        return rows

    def build_login_history(self) -> list[Row]:
        rows: list[Row] = []
        for i in range(self.count("login_history")):
            user, at = self.user_event(0.01, DAY)
            ok = 1 if self.rng.random() < 0.93 else 0
            rows.append((i + 1, user.id, user.workspace.id, self.ip(), ok, _fmt(at)))
        return rows

    def build_failed_logins(self) -> list[Row]:
        rng, n = self.rng, self.count("failed_logins")
        stamps: list[tuple[float, str, str]] = []
        while len(stamps) < n * 0.3:  # credential-stuffing bursts: one IP, many emails, minutes
            centre, ip = self.grown(self.start, self.now - HOUR), self.ip()
            for _ in range(rng.randint(20, 60)):
                email = f"{rng.choice(('admin', 'info', 'test', 'root', 'sales'))}" \
                        f"{rng.randrange(100)}@{rng.choice(_DOMAINS)}"
                stamps.append((centre + rng.random() * 20 * MINUTE, email, ip))
        while len(stamps) < n:  # people mistyping their own password
            user, at = self.user_event(0.03, 2 * DAY)
            stamps.append((at, user.email, self.ip()))
        stamps.sort()
        return [(i + 1, email, ip, _fmt(at)) for i, (at, email, ip) in enumerate(stamps[:n])]

    def build_password_reset_tokens(self) -> list[Row]:
        rng = self.rng
        rows: list[Row] = []
        for i in range(self.count("password_reset_tokens")):
            user, at = self.user_event(0.06, 20 * HOUR)
            used = at + rng.uniform(MINUTE, 50 * MINUTE)
            used_at = used if rng.random() < 0.7 and used <= self.now else None
            token_hash = hashlib.sha256(rng.randbytes(32)).hexdigest()
            rows.append((i + 1, user.id, token_hash, _fmt(at), _fmt(at + HOUR),
                         _fmt_opt(used_at)))
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
            rows.append((self.hexid(128), user_id, rng.choice(_PROVIDERS), _fmt(at)))
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
                         _fmt(at), _fmt(expires), _fmt_opt(revoked)))
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
        return [(i + 1, *s[1:], _fmt(s[0])) for i, s in enumerate(stamps)]

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
        return [(i + 1, lvl, msg, req, _fmt(at))
                for i, (at, lvl, msg, req) in enumerate(stamps)]

    def build_error_logs(self) -> list[Row]:
        rng = self.rng
        stamps: list[tuple[float, str, str, int | None]] = []
        for _ in range(self.count("error_logs")):
            user: _User | None = None
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
        return [(i + 1, "error", msg, stack, uid, _fmt(at))
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
        return [(i + 1, *s[1:], _fmt(s[0])) for i, s in enumerate(stamps)]

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
                rows.append((len(rows) + 1, name, value, _fmt(at)))
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
        return [(i + 1, *s[1:], _fmt(s[0])) for i, s in enumerate(stamps)]

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
            rows.append((i, uid, wid, number, cents, currency, _fmt(issued), _fmt_opt(paid_at)))
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

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("BEGIN")
        for statement in _TABLES.split(";"):
            if statement.strip():
                conn.execute(statement)
        for name, rows in tables.items():
            if rows:
                marks = ", ".join("?" * len(rows[0]))
                conn.executemany(f"INSERT INTO {name} VALUES ({marks})", rows)
        for name, columns in _INDEXES.items():
            for columns_sql in columns:
                suffix = columns_sql.replace(", ", "_")
                conn.execute(f"CREATE INDEX ix_{name}_{suffix} ON {name} ({columns_sql})")
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return {name: len(rows) for name, rows in tables.items()}
