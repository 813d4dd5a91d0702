"""The demo's people: workspaces and their members, and the clock and dice that make every
other table's rows agree with them (who was signed up, and not yet gone, at an instant).

Personal data is fake by construction: names are recombined common given and family
names, emails use the reserved example.* domains, phone numbers come from the ranges
reserved for fiction, and IP addresses from the documentation blocks.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

MINUTE = 60
HOUR = 3_600
DAY = 86_400
YEAR = 365.25 * DAY
# Usage doubles every year: old data is thinner than recent data, as in a growing product.
GROWTH = math.log(2.0) / YEAR

Row = tuple[object, ...]

# Base row counts at scale 1.0; metrics and invoices follow from time and workspaces.
BASE = {
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
DOMAINS = ("example.com", "example.org", "example.net")
_WS_A = (
    "Northwind", "Blue", "Copper", "Quiet", "Bright", "Little", "Iron", "Silver", "Harbor",
    "Maple", "Cedar", "Polar", "Granite", "Lumen", "Orbit", "Sunny",
)
_WS_B = (
    "Labs", "Studio", "Logistics", "Health", "Analytics", "Foods", "Partners", "Robotics",
    "Media", "Works", "Bank", "Travel", "Systems", "Collective",
)


def fmt(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(ts)))


def fmt_opt(ts: float | None) -> str | None:
    return None if ts is None else fmt(ts)


@dataclass
class Workspace:
    id: str
    name: str
    region: str
    created: float
    weight: float
    members: list[User] = field(default_factory=list)


@dataclass
class User:
    workspace: Workspace
    email: str
    name: str
    phone: str | None
    created: float
    closed: float | None
    id: int = 0


class People:
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
        self.workspaces: list[Workspace] = []
        self.users: list[User] = []
        self.active: list[User] = []
        self.active_created: list[float] = []
        self.users_created: list[float] = []

    def count(self, table: str) -> int:
        return max(3, round(BASE[table] * self.scale))

    def grown(self, lo: float, hi: float) -> float:
        """An instant in [lo, hi] whose density grows with usage (inverse-CDF sampling)."""
        if hi <= lo:
            return hi
        u = self.rng.random()
        return lo + math.log1p(u * math.expm1(GROWTH * (hi - lo))) / GROWTH

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

    def user_event(self, live_share: float = 0.0, window: float = DAY) -> tuple[User, float]:
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
            self.workspaces.append(Workspace(wid, name, region, created,
                                              rng.paretovariate(1.5)))
        self.workspaces.sort(key=lambda w: w.created)
        return [(w.id, w.name, w.region, fmt(w.created)) for w in self.workspaces]

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
            email = f"{local}@{rng.choice(DOMAINS)}"
            while email in taken:
                suffix += 1
                email = f"{local}{suffix}@{rng.choice(DOMAINS)}"
            taken.add(email)
            closed = None
            if rng.random() < (0.08 if is_owner else 0.16) and created + DAY < now:
                closed = created + DAY + rng.random() * (now - created - DAY)
            user = User(ws, email, f"{first} {last}", self._phone(ws.region), created, closed)
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
            rows.append((u.id, u.workspace.id, u.email, u.name, u.phone, fmt(u.created),
                         fmt_opt(last_login), fmt_opt(u.closed), fmt_opt(deleted)))
        return rows
