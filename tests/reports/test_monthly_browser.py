"""The monthly report's HTML in a real browser: headless Chromium loads it, draws it and
keeps its charts. Without a `chromium` binary the test skips, but under CI=true it fails
(like the PostgreSQL rule in conftest)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lethe.engine.execute import execute
from lethe.engine.plan import build_plan
from lethe.holds import parse_scope, place_hold
from lethe.reports.monthly import MonthlyReport, build_report
from lethe.reports.render import write_report
from tests.fixtures import NOW, build_app, runtime, write_policy

BLUE = (0x09, 0x69, 0xDA)  # the bars' fill in monthly.html.j2
RED = (0xCF, 0x22, 0x2E)  # a rule past its limit


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the chromium binary is missing (required under CI)")
        pytest.skip("chromium is not installed")
    return found


def run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    command = [binary, "--headless", "--disable-gpu", "--hide-scrollbars",
               "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}", *args]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.insert(1, "--no-sandbox")  # Chromium refuses to run as root otherwise
    return subprocess.run(command, capture_output=True, timeout=120, check=False)


def decode_png(data: bytes) -> tuple[int, int, list[tuple[int, int, int]]]:
    """Width, height and RGB pixels of an 8-bit RGB or RGBA PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
    channels = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    previous = bytearray(stride)
    pixels: list[tuple[int, int, int]] = []
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if kind == 2:  # Up, most of Chromium's rows: one pass without index arithmetic
            line = bytearray((a + b) & 0xFF for a, b in zip(line, previous, strict=True))
        elif kind in (1, 3, 4):
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                up = previous[i]
                if kind == 1:
                    line[i] = (line[i] + left) & 0xFF
                elif kind == 3:
                    line[i] = (line[i] + (left + up) // 2) & 0xFF
                else:
                    corner = previous[i - channels] if i >= channels else 0
                    p = left + up - corner
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                    pred = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
                    line[i] = (line[i] + pred) & 0xFF
        pixels += zip(line[0::channels], line[1::channels], line[2::channels], strict=True)
        previous = line
    return width, height, pixels


@pytest.fixture(scope="module")
def report_html(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, MonthlyReport]:
    """A June with deletions, a hold that keeps sessions past their limit (an exception),
    events no run reached since they fell due (a breach), and charts."""
    directory = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{directory / 'app.db'}"
    build_app(url)
    policy = write_policy(directory, url)
    rt = runtime(policy, datetime(2026, 5, 20, tzinfo=UTC))
    place_hold(rt.control, rt.audit, rt.clock, parse_scope(rt.policy, None, None, "sessions"),
               "litigation")
    rt = runtime(policy, NOW)
    execute(rt, build_plan(rt))
    rt = runtime(policy, datetime(2026, 6, 20, tzinfo=UTC))
    execute(rt, build_plan(rt, ["sessions", "users"]))
    report = build_report(rt, "2026-06")
    rt.close()
    paths = write_report(report, directory / "out", ("html",))
    return paths[0], report


def test_chromium_draws_the_report_with_its_charts(report_html: tuple[Path, MonthlyReport],
                                                   tmp_path: Path) -> None:
    binary = chromium()
    page, report = report_html
    shot = tmp_path / "report.png"
    proc = run_chromium(binary, tmp_path / "profile", f"--screenshot={shot}",
                        "--window-size=1200,2000", page.as_uri())
    assert shot.exists(), proc.stderr.decode(errors="replace")[-2000:]
    assert shot.stat().st_size > 20_000
    width, height, pixels = decode_png(shot.read_bytes())
    assert (width, height) == (1200, 2000)
    colours = set(pixels)
    assert len(colours) > 50  # text, tables and charts, not a blank or error page
    inked = sum(1 for p in pixels if p != (255, 255, 255))
    assert inked > 0.02 * len(pixels)
    # The charts were drawn: the bars' blue, and the red of a rule past its limit.
    assert report.summary.datasets_over_limit >= 1
    assert sum(1 for p in pixels if p == BLUE) > 200
    assert sum(1 for p in pixels if p == RED) > 200


def test_chromium_keeps_the_charts_in_the_loaded_page(report_html: tuple[Path, MonthlyReport],
                                                      tmp_path: Path) -> None:
    binary = chromium()
    page, report = report_html
    proc = run_chromium(binary, tmp_path / "profile", "--dump-dom", page.as_uri())
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    dom = proc.stdout.decode("utf-8")
    assert dom.count("<svg") == 3
    deletions = dom.split('data-chart="deletions"', 1)[1].split("</svg>", 1)[0]
    ages = dom.split('data-chart="ages"', 1)[1].split("</svg>", 1)[0]
    assert deletions.count("<rect") == len(report.day_totals) == 30
    assert '<title id="deletions-title">Rows handled per day</title>' in deletions
    assert "Day of the month" in deletions and ">Rows<" in deletions
    measured = [a for a in report.ages if a.ratio is not None]
    assert ages.count("<rect") == len(measured) > 0
    assert ages.count('class="over"') == sum(a.over_limit for a in measured) >= 1
    assert '<desc id="ages-desc">' in ages
    # deletion lag (issue 19, item 2): a bar per rule a run found due rows of, with the
    # median marked, and the numbers in words
    lags = dom.split('data-chart="lags"', 1)[1].split("</svg>", 1)[0]
    assert lags.count("<rect") == len(report.lags) > 0
    assert all(f"{line.max_hours:,.1f} h" in lags for line in report.lags)
