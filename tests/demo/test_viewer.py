"""The viewer in a real headless Chromium (Debian's), driven over the DevTools protocol, after the scenario ran on the
local mesh: the TTS lane, the reasons, the values, the caller, and a layout readable at a desktop's and a phone's
viewport (no clipping, no horizontal scrollbar).

``TXTOKEN_DEMO_SCREENSHOT=docs/demo-viewer.png`` also writes the desktop screenshot there (and the phone's beside it,
``-phone``): that is how docs/demo-viewer.png is made.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service_mesh_demo.mesh import Mesh
from service_mesh_demo.reasons import reason_for
from service_mesh_demo.scenario import STEPS, StepResult

from .browser import Browser, chromium

VIEWPORTS = {"desktop": (1280, 800), "phone": (390, 844)}
CALLER = "spiffe://shop.example/ns/shop/sa/inventory"
CALLER_TRACE = "8. a hop that reports its caller's identity"

#: Everything on the page that sticks out: of the viewport, of its own box, or (texts) of their drawing.
LAYOUT_PROBLEMS = """(() => {
  const width = window.innerWidth, problems = [];
  const name = (el) => `${el.tagName}.${el.getAttribute("class") || ""} "${(el.textContent || "").slice(0, 40)}"`;
  const page = document.documentElement.scrollWidth;
  if (page > width) problems.push(`page is ${page}px wide`);
  for (const el of document.body.querySelectorAll("*")) {
    if (el.closest("script, style") || getComputedStyle(el).display === "none") continue;
    const box = el.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue;
    if (box.left < -0.5 || box.right > width + 0.5) problems.push(`${name(el)} spans ${box.left}..${box.right}`);
    if (!(el instanceof SVGElement) && el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1)
      problems.push(`${name(el)} overflows its box: ${el.scrollWidth} > ${el.clientWidth}`);
  }
  for (const svg of document.querySelectorAll("svg.diagram")) {
    if (getComputedStyle(svg).display === "none") continue;
    const frame = svg.getBoundingClientRect();
    for (const text of svg.querySelectorAll("text")) {
      const box = text.getBoundingClientRect();
      if (box.left < frame.left - 0.5 || box.right > frame.right + 0.5) problems.push(`${name(text)} is clipped`);
      if (box.height < 11) problems.push(`${name(text)} is ${box.height}px high`);
    }
  }
  for (const el of document.querySelectorAll("li, .chip, h2, .meta, p")) {
    if (el.getBoundingClientRect().height > 0 && parseFloat(getComputedStyle(el).fontSize) < 11)
      problems.push(`${name(el)} is set in ${getComputedStyle(el).fontSize}`);
  }
  return problems;
})()"""


def section(trace: str) -> str:
    return f"document.querySelector(`section[data-trace=${{JSON.stringify({trace!r})}}]`)"


def arrows(browser: Browser, trace: str) -> list[list[str]]:
    """The events of one transaction's diagram: kind, from, to, verdict."""
    value: list[list[str]] = browser.evaluate(
        f"[...{section(trace)}.querySelectorAll('g.event')]"
        ".map((g) => [g.dataset.kind, g.dataset.from, g.dataset.to, g.dataset.verdict])"
    )
    return value


def texts(browser: Browser, trace: str, selector: str) -> list[str]:
    value: list[str] = browser.evaluate(
        f"[...{section(trace)}.querySelectorAll({selector!r})].map((el) => el.textContent)"
    )
    return value


@pytest.fixture(scope="module")
def viewer(mesh: Mesh, results: dict[str, StepResult]) -> str:
    """The viewer's address, once the scenario ran and a hop carrying its caller's identity was reported."""
    # the purchase's last hop, payments called by inventory, as the WIMSE binding reports it: with the caller's WIT sub
    payments = next(hop for hop in results["legitimate purchase"].hops if hop["service"] == "payments")
    report: dict[str, Any] = {**payments, "trace": CALLER_TRACE, "caller": CALLER}
    httpx.post(f"{mesh.url('gateway')}/demo/hops", json=report, timeout=10).raise_for_status()
    return f"{mesh.url('gateway')}/"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    binary = chromium()
    if binary is None:
        pytest.skip("no browser: `apt-get install chromium` (Debian's; .ci/run installs it) to run this test")
    with Browser(binary, tmp_path_factory.mktemp("chromium-profile")) as running:
        yield running


@pytest.fixture
def desktop(browser: Browser, viewer: str) -> Browser:
    browser.open(viewer, *VIEWPORTS["desktop"], ready=f"document.body.dataset.rendered >= {len(STEPS) + 1}")
    return browser


def test_tts_lane_shows_the_exchange_and_both_replacements(
    desktop: Browser, results: dict[str, StepResult], mesh: Mesh
) -> None:
    trace = results["legitimate purchase"].trace
    shipping = [] if "shipping" in mesh.left_out else [["hop", "orders", "shipping", "ok"]]  # Node.js behind nginx
    assert arrows(desktop, trace) == [
        ["hop", "client", "gateway", "ok"],
        ["tts", "gateway", "tts", "ok"],  # the exchange: the access token stops at the gateway
        ["hop", "gateway", "orders", "ok"],
        ["tts", "orders", "tts", "ok"],  # orders narrows the scope
        ["hop", "orders", "inventory", "ok"],
        ["tts", "inventory", "tts", "ok"],  # inventory adds its reservation
        ["hop", "inventory", "payments", "ok"],
        *shipping,
    ]
    assert desktop.evaluate("document.querySelector('g.lane-tts text').textContent") == "TTS"
    calls = texts(desktop, trace, "li.tts")
    assert "gateway asked for an exchange with scope “orders.create inventory.reserve payments.charge”" in calls[0]
    assert "item=widget" in calls[0] and "quantity=2" in calls[0]
    assert "orders asked for a replacement with scope “inventory.reserve payments.charge”" in calls[1]
    assert "inventory asked for a replacement" in calls[2] and "reservation_id=r-" in calls[2]


def test_each_hop_shows_its_context_values(desktop: Browser, results: dict[str, StepResult]) -> None:
    payments = next(li for li in texts(desktop, results["legitimate purchase"].trace, "li.hop") if "→ payments" in li)
    assert "req_wl inventory" in payments
    for value in ("item=widget", "quantity=2", "amount=25.00", "currency=EUR", "reservation_id=r-"):
        assert value in payments


def test_every_refusal_has_its_reason_in_plain_words(desktop: Browser, results: dict[str, StepResult]) -> None:
    for step in STEPS[1:]:
        trace = results[step.label].trace
        reason = reason_for(step.expected)
        assert reason in texts(desktop, trace, "li .reason"), step.label
        assert reason in texts(desktop, trace, "svg text.reason"), step.label
    escalation = arrows(desktop, results["scope escalation at replacement"].trace)
    assert ["tts", "orders", "tts", "invalid_scope"] in escalation  # refused by the TTS, drawn in its lane


def test_caller_identity_is_shown_when_the_hop_reports_one(desktop: Browser) -> None:
    assert f"caller {CALLER}" in texts(desktop, CALLER_TRACE, "li.hop .context")[0]


def test_times_are_labelled_steady_state(desktop: Browser, results: dict[str, StepResult], mesh: Mesh) -> None:
    assert "Times are steady state" in desktop.evaluate("document.body.textContent")
    expected = 4 if "shipping" in mesh.left_out else 5  # the warm-up purchase sent no hop report of its own
    assert len(results["legitimate purchase"].hops) == expected


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_readable_without_clipping_or_horizontal_scrolling(
    browser: Browser, viewer: str, viewport: str, tmp_path: Path
) -> None:
    width, height = VIEWPORTS[viewport]
    browser.open(viewer, width, height, ready=f"document.body.dataset.rendered >= {len(STEPS) + 1}")
    assert browser.evaluate(LAYOUT_PROBLEMS) == []
    diagram_shown = browser.evaluate("getComputedStyle(document.querySelector('svg.diagram')).display !== 'none'")
    assert diagram_shown == (viewport == "desktop")  # on a phone the numbered list says the same, from → to
    assert browser.evaluate("document.querySelectorAll('ol.events li.tts').length") >= 3
    wanted = os.environ.get("TXTOKEN_DEMO_SCREENSHOT")
    screenshot = tmp_path / "viewer.png"
    if wanted:
        screenshot = Path(wanted) if viewport == "desktop" else Path(wanted).with_stem(Path(wanted).stem + "-phone")
    browser.screenshot(screenshot)
    assert screenshot.read_bytes().startswith(b"\x89PNG")
