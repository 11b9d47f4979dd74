"""report.html opened in a real headless Chromium: it renders, and its charts are there.

Chromium comes from Debian's ``chromium`` package (.ci/run installs it and sets
``EDGEC_REQUIRE_BROWSER=1``, so in CI a missing browser is a failure, not a skip).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from edgec.report.charts import COMPARE, COMPUTE, CURRENT, MEMORY, RATE

pytestmark = pytest.mark.browser

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("EDGEC_REQUIRE_BROWSER"):
            pytest.fail("chromium is required here (EDGEC_REQUIRE_BROWSER is set) but not installed")
        pytest.skip("headless Chromium is not installed (apt-get install chromium)")
    return exe


def run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    return subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "HOME": str(tmp_path)},
    )


class Charts(HTMLParser):
    """Counts ``<rect class="bar">`` inside each ``<svg id=...>`` of the rendered DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.bars: dict[str, int] = {}
        self.current: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "svg" and a.get("id"):
            self.current = a["id"]
            self.bars[self.current] = 0
        elif tag == "rect" and a.get("class") == "bar" and self.current is not None:
            self.bars[self.current] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self.current = None


def hex_rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def color_pixels(image, color: str, tol: int = 12) -> int:
    r0, g0, b0 = hex_rgb(color)
    return sum(
        n
        for n, (r, g, b) in image.getcolors(maxcolors=1 << 24)
        if abs(r - r0) <= tol and abs(g - g0) <= tol and abs(b - b0) <= tol
    )


@pytest.mark.parametrize("model", ["zoo:digits-cnn", "zoo:resnet20", "zoo:digits-snn-cnn"])
def test_html_report_renders_with_charts(cli, tmp_path, model):
    from PIL import Image

    report = tmp_path / "report.html"
    res = cli("report", model, "-o", report)
    assert res.exit_code == 0, res.stderr
    url = report.resolve().as_uri()

    dom = run_chromium(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    charts = Charts()
    charts.feed(dom.stdout)
    assert charts.bars.get("chart-energy", 0) >= 4, charts.bars
    assert charts.bars.get("chart-rate", 0) >= 2, charts.bars
    assert charts.bars.get("chart-compare", 0) >= 2, charts.bars

    shot = tmp_path / "shot.png"
    proc = run_chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2400", url)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 2400)
    colors = image.getcolors(maxcolors=1 << 24)
    non_white = sum(n for n, rgb in colors if min(rgb) < 235)
    assert non_white > 0.02 * image.size[0] * image.size[1]  # not blank: text, tables and bars
    # the bars are drawn: each chart's colour covers real area on the screenshot
    assert color_pixels(image, COMPUTE) > 200
    assert color_pixels(image, MEMORY) > 200
    assert color_pixels(image, RATE) > 200
    assert color_pixels(image, CURRENT) + color_pixels(image, COMPARE) > 200
