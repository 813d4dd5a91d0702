"""Trust pages: generated from the policy, saying what it enforces, in well-formed HTML
and Markdown, with every piece of policy text escaped."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from datetime import UTC, datetime
from html.parser import HTMLParser
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import yaml

from lethe.errors import UsageError
from lethe.policy.load import load_policy
from lethe.policy.model import Policy
from lethe.reports.trust import render, trust_pages, write_trust_pages

NOW = datetime(2026, 6, 1, tzinfo=UTC)
DEMO = Path(str(files("lethe.demo") / "policy.yaml"))
VOID = {"meta", "link", "br", "hr", "img", "input", "col", "area", "base", "wbr", "source"}

# The demo policy's schedule, written out by hand: (data, kept for, then …).
DEMO_SCHEDULE = [
    ("User accounts", "90 days", "Deleted, recoverable for 14 days, then permanently deleted"),
    ("Sessions", "30 days", "Deleted"),
    ("Login history", "12 months", "Deleted"),
    ("Failed logins", "30 days", "Deleted"),
    ("Password reset tokens", "24 hours", "Deleted"),
    ("OAuth states", "10 minutes", "Deleted"),
    ("Access tokens", "90 days", "Deleted"),
    ("Webhook events (with status processed)", "90 days", "Deleted"),
    ("Webhook events (with status failed)", "30 days", "Deleted"),
    ("Webhook events (with status pending or queued)", "7 days", "Deleted"),
    ("App logs", "30 days", "Deleted"),
    ("Error logs", "90 days", "Deleted"),
    ("Audit logs", "7 years", "Deleted"),
    ("Metrics", "13 months", "Deleted"),
    ("Analytics events", "90 days", "Anonymised (IP address removed, user ID removed)"),
    ("Invoices", "7 years", "Deleted"),
    ("Data exports", "30 days", "Deleted"),
]


class Page(HTMLParser):
    """Checks nesting as it goes and collects table rows and text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.tags: list[str] = []
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag not in VOID:
            self.open.append(tag)
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1:]}>"
        self.open.pop()
        if tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self.cell is not None:
            self.cell.append(data)


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    assert page.open == [], f"unclosed: {page.open}"
    assert html.startswith("<!DOCTYPE html>")
    assert page.tags.count("h1") == 1 and page.tags.count("html") == 1
    return page


def md_rows(markdown: str) -> list[list[str]]:
    """Table rows of a Markdown page, split on unescaped pipes."""
    rows = []
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = line.replace("\\|", "\x00").strip().strip("|").split("|")
            rows.append([c.strip().replace("\x00", "|") for c in cells])
    return rows


def demo_pages(fmt: str) -> dict[str, str]:
    return render(trust_pages(load_policy(DEMO), NOW), fmt)


def policy_with(tmp_path: Path, **top: Any) -> Policy:
    data = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    data.update(top)
    path = tmp_path / "lethe.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_policy(path)


def test_the_retention_page_gives_each_datasets_period_and_method() -> None:
    html = parse(demo_pages("html")["retention.html"])
    table = [row[:1] + row[2:3] + row[4:5] for row in html.rows if len(row) == 5][1:]
    assert table == [list(row) for row in DEMO_SCHEDULE]
    markdown = md_rows(demo_pages("markdown")["retention.md"])
    assert [r[:1] + r[2:3] + r[4:5] for r in markdown if len(r) == 5][1:] == \
        [list(row) for row in DEMO_SCHEDULE]


def test_the_pages_read_like_a_published_policy() -> None:
    pages = demo_pages("html")
    text = " ".join(" ".join("".join(parse(page).text).split()) for page in pages.values())
    assert "We keep sessions for 30 days after last activity, then delete them." in text
    assert ("We keep user accounts for 90 days after account closure, then delete them; "
            "they can be restored for 14 days") in text
    erasure = [row for row in parse(pages["retention.html"]).rows if len(row) == 2]
    assert ["Invoices", "Kept for 7 years (legal basis: tax law: 7 years), then deleted"] \
        in erasure
    assert ["Sessions", "Deleted"] in erasure
    assert "We complete verified erasure requests within 30 days." in text
    assert "Last updated June 1, 2026" in text
    assert "email masked (j***@example.com)" in text


def test_the_inventory_names_store_region_and_residency(tmp_path: Path) -> None:
    policy = policy_with(tmp_path, regions=["us", "eu"],
                         residency={"dataset": "workspaces", "region": "region",
                                    "default": "us"})
    html = render(trust_pages(policy, NOW), "html")["data-inventory.html"]
    page = parse(html)
    rows = {row[0]: row for row in page.rows if len(row) == 5}
    assert rows["Data exports"][2:4] == ["files (Object storage)", "us"]
    assert rows["Invoices"][1] == "Operational data"
    assert "Kept after an erasure request: tax law: 7 years" in rows["Invoices"][4]
    text = " ".join("".join(page.text).split())
    assert "Each workspace has a home region" in text
    assert "Workspaces that have not chosen a region are hosted in us." in text


def test_policy_text_is_escaped_in_html_and_markdown(tmp_path: Path) -> None:
    data = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    data["organization"] = "<script>alert(1)</script> & Co"
    data["datasets"]["invoices"]["legal_basis"] = "<img src=x onerror=alert(1)> | *law*"
    data["datasets"]["sessions"]["description"] = "Sign-ins <b>[link](javascript:x)</b>"
    path = tmp_path / "lethe.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    pages = trust_pages(load_policy(path), NOW)
    for name, html in render(pages, "html").items():
        page = parse(html)
        assert "script" not in page.tags and "img" not in page.tags and "b" not in page.tags
        assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in html, name
    inventory = parse(render(pages, "html")["data-inventory.html"])
    assert "Sign-ins <b>[link](javascript:x)</b>" in " ".join(inventory.text)
    for name, markdown in render(pages, "markdown").items():
        assert "<script>" not in markdown and "<img" not in markdown, name
        assert "&lt;script&gt;" in markdown
        widths = {len(row) for row in md_rows(markdown)}
        assert len(widths) <= 2, f"a pipe in policy text broke a table in {name}"
    retention = render(pages, "markdown")["retention.md"]
    assert "\\| \\*law\\*" in retention
    assert "\\[link\\](javascript:x)" in render(pages, "markdown")["data-inventory.md"]


def test_write_and_the_docs_command(tmp_path: Path) -> None:
    written = write_trust_pages(load_policy(DEMO), NOW, tmp_path / "md", "markdown")
    assert [p.name for p in written] == ["retention.md", "data-inventory.md",
                                         "classification.md"]
    with pytest.raises(UsageError):
        write_trust_pages(load_policy(DEMO), NOW, tmp_path / "x", "pdf")
    out = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-c", "from lethe.cli.app import main; main()",
                           "docs", "--policy", str(DEMO), "--out", str(out), "--json",
                           "--now", NOW.isoformat()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    listed = [Path(p) for p in json.loads(proc.stdout)["files"]]
    assert sorted(p.name for p in listed) == sorted(
        ["retention.html", "data-inventory.html", "classification.html",
         "retention.md", "data-inventory.md", "classification.md"])
    assert all(p.is_file() and p.parent == out for p in listed)


def test_docs_publishes_the_key_that_signs_certificates(tmp_path: Path) -> None:
    """Issue 19, item 4: beside the pages, the organization's public key and its
    fingerprint, so a reviewer pins it: `certificate verify --public-key` accepts a
    certificate it signed and refuses one another key signed."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from lethe.crypto.signing import create_key
    from lethe.requests.certificate import sign_certificate
    from tests.requests.test_certificate import body

    policy = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    policy.setdefault("audit", {})["key"] = str(tmp_path / "organization.key")
    path = tmp_path / "lethe.yaml"
    path.write_text(yaml.safe_dump(policy), encoding="utf-8")

    def lethe(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", "from lethe.cli.app import main; main()",
                               *args], capture_output=True, text=True, timeout=120,
                              cwd=tmp_path)

    unsigned = lethe("docs", "--policy", str(path), "--out", str(tmp_path / "a"), "--json")
    assert unsigned.returncode == 0, unsigned.stderr
    assert json.loads(unsigned.stdout)["public_key"] is None  # no key: nothing published
    key = create_key(tmp_path / "organization.key")
    proc = lethe("docs", "--policy", str(path), "--out", str(tmp_path / "site"), "--json")
    assert proc.returncode == 0, proc.stderr
    published = Path(json.loads(proc.stdout)["public_key"])
    assert published == tmp_path / "site" / "organization-key.pem" and published.is_file()
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    fingerprint = hashlib.sha256(raw).hexdigest()
    for page in ("retention.html", "retention.md", "data-inventory.html"):
        assert fingerprint in (tmp_path / "site" / page).read_text(encoding="utf-8"), page
    ours = tmp_path / "ours.json"
    ours.write_text(json.dumps(sign_certificate(body(), key)), encoding="utf-8")
    theirs = tmp_path / "theirs.json"
    theirs.write_text(json.dumps(sign_certificate(body(), create_key(tmp_path / "x.key"))),
                      encoding="utf-8")
    assert lethe("certificate", "verify", str(ours), "--public-key", str(published),
                 "--policy", str(path)).returncode == 0
    refused = lethe("certificate", "verify", str(theirs), "--public-key", str(published),
                    "--policy", str(path))
    assert refused.returncode == 1 and "not by the trusted key" in refused.stdout
