"""Every page of the flow in a real browser, checked as assistive technology and keyboard users
meet it (labels, focus order, lang, one h1, WCAG AA contrast, the organization named), and
back/forward after opening the link."""

from __future__ import annotations

import re
from typing import Any

from mfactl.app import App
from mfactl.services import users
from tests.web import test_browser
from tests.web.test_browser import Server, code_for, qr_of, secret_on
from tests.web.test_site import state

# the browser (one for this module) and a real `mfactl serve`, as test_browser starts them
chromium = test_browser.chromium
served = test_browser.served

AA = 4.5  # WCAG 2 AA, normal text; also demanded of large text here

# Every element with text of its own, with its color and the backgrounds from it up to the root
# (no background image may hide under text: then the contrast could not be computed).
_TEXTS = """() => {
  const visible = (el) => {
    const style = getComputedStyle(el), box = el.getBoundingClientRect();
    return style.display !== 'none' && style.visibility === 'visible' && box.width > 0
      && box.height > 0;
  };
  const found = [];
  for (const el of document.body.querySelectorAll('*')) {
    const own = [...el.childNodes].filter((n) => n.nodeType === 3 && n.data.trim()).map(
      (n) => n.data.trim()).join(' ');
    if (!own || !visible(el)) continue;
    const layers = [];
    let opacity = 1;
    for (let at = el; at; at = at.parentElement) {
      const style = getComputedStyle(at);
      layers.push({color: style.backgroundColor, image: style.backgroundImage});
      opacity *= Number(style.opacity);
    }
    found.push({text: own.slice(0, 40), tag: el.tagName, color: getComputedStyle(el).color,
                layers, opacity});
  }
  return found;
}"""

# What the Tab key should reach, in the document's order: enabled, not hidden, not removed from
# the order by a negative tabindex.
_TABBABLE = """() => [...document.querySelectorAll(
    'a[href], button, input, select, textarea, summary, [tabindex]')].filter((el) =>
  !el.disabled && el.type !== 'hidden' && el.tabIndex >= 0
  && getComputedStyle(el).visibility === 'visible' && el.getClientRects().length > 0
).map((el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : ''))"""

# The focused element, whether it can be seen, and whether it shows that it has the focus.
_FOCUSED = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const box = el.getBoundingClientRect(), style = getComputedStyle(el);
  return {name: el.tagName.toLowerCase() + (el.id ? '#' + el.id : ''),
          top: box.top + scrollY, seen: box.width > 0 && box.height > 0
            && box.right + scrollX > 0 && box.bottom + scrollY > 0
            && style.visibility === 'visible' && Number(style.opacity) > 0,
          ring: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0};
}"""


def rgba(css: str) -> tuple[float, float, float, float]:
    found = re.fullmatch(r"rgba?\(([\d.]+),\s*([\d.]+),\s*([\d.]+)(?:,\s*([\d.]+))?\)", css)
    assert found, f"a color this check cannot read: {css}"
    red, green, blue, alpha = found.groups()
    return float(red), float(green), float(blue), float(alpha) if alpha is not None else 1.0


def over(top: tuple[float, float, float, float], below: tuple[float, float, float]) -> Any:
    """``top`` composited over an opaque ``below``."""
    alpha = top[3]
    return tuple(alpha * t + (1 - alpha) * b for t, b in zip(top[:3], below, strict=True))


def luminance(color: tuple[float, float, float]) -> float:
    """WCAG 2 relative luminance of an sRGB color (0-255 channels)."""

    def linear(channel: float) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    red, green, blue = (linear(c) for c in color)
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast(one: tuple[float, float, float], two: tuple[float, float, float]) -> float:
    light, dark = sorted((luminance(one), luminance(two)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_contrast_is_the_wcag_formula() -> None:
    assert round(contrast((0, 0, 0), (255, 255, 255)), 2) == 21.0
    assert round(contrast((118, 118, 118), (255, 255, 255)), 2) == 4.54  # #767676: AA's edge
    assert contrast((119, 119, 119), (119, 119, 119)) == 1.0


def low_contrast(page: Any) -> list[str]:
    """Each visible text whose contrast with its effective background is under AA."""
    failing = []
    for text in page.evaluate(_TEXTS):
        assert all(layer["image"] == "none" for layer in text["layers"]), text
        background: tuple[float, float, float] = (255.0, 255.0, 255.0)  # the canvas
        for layer in reversed(text["layers"]):  # from the root down to the element
            background = over(rgba(layer["color"]), background)
        color = rgba(text["color"])
        shown = over((*color[:3], color[3] * text["opacity"]), background)
        ratio = contrast(shown, background)
        if ratio < AA:
            failing.append(f"{text['tag']} {text['text']!r}: {ratio:.2f}")
    return failing


def tab_order(page: Any) -> list[dict[str, Any]]:
    """The elements the Tab key visits from the top of the page, one full round."""
    # a start point before everything, so an autofocused field does not skip itself
    page.evaluate(
        "() => { const s = document.createElement('span'); s.tabIndex = -1;"
        " document.body.prepend(s); s.focus(); }"
    )
    visited: list[dict[str, Any]] = []
    for _ in range(len(page.evaluate(_TABBABLE)) + 1):
        page.keyboard.press("Tab")
        focused = page.evaluate(_FOCUSED)
        if focused is None or (visited and focused["name"] == visited[0]["name"]):
            break  # out of the page, or round again
        visited.append(focused)
    return visited


def check_page(page: Any, org_name: str, issuer: str = "Browser Test") -> list[str]:
    """Labels, focus order, lang, one h1, contrast and the organization's name on the page."""
    # every control has an accessible name (the accessibility tree, as a screen reader gets it)
    tree = page.locator("body").aria_snapshot()
    controls = re.findall(r"^\s*- (textbox|button|checkbox|combobox|radio)\b(.*)$", tree, re.M)
    assert all(re.match(r' "[^"]+"', rest) for _role, rest in controls), tree
    fields = page.locator("input:not([type=hidden]), select, textarea, button")
    assert len(controls) == fields.count(), tree
    for index in range(page.locator("input:not([type=hidden]), select, textarea").count()):
        field = page.locator("input:not([type=hidden]), select, textarea").nth(index)
        labelled = page.get_by_label(re.compile(".+")).and_(field)
        assert labelled.count() == 1, field.evaluate("el => el.outerHTML")

    visited = tab_order(page)
    assert [v["name"] for v in visited] == page.evaluate(_TABBABLE)
    assert all(v["seen"] and v["ring"] for v in visited), visited
    tops = [v["top"] for v in visited]
    assert tops == sorted(tops), visited  # the reading order, top to bottom

    assert page.evaluate("document.documentElement.lang") == "en"
    assert page.locator("h1").count() == 1
    assert low_contrast(page) == []
    assert page.locator("header").inner_text() == f"{issuer} · {org_name}"
    return [v["name"] for v in visited]


def test_every_page_of_the_flow_passes_the_checks(
    chromium: Any, served: tuple[App, Server, str]
) -> None:
    app, _server, link = served
    context = chromium.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    assert page.goto(link).status == 200
    assert check_page(page, "Acme Corporation") == ["button"]

    page.get_by_role("button", name="Show my QR code").click()
    assert check_page(page, "Acme Corporation") == ["input#code", "button"]
    uri = qr_of(page)
    page.fill("#code", "000000" if code_for(uri) != "000000" else "111111")
    page.get_by_role("button", name="Turn on MFA").click()
    assert page.locator("#problem").is_visible()  # the reason, next to the field
    assert check_page(page, "Acme Corporation") == ["input#code", "button"]

    other = chromium.new_context()
    stranger = other.new_page()
    assert stranger.goto(link).status == 409
    assert check_page(stranger, "Acme Corporation") == []
    unknown = link.split("token=")[0] + "token=" + "x" * 43
    assert stranger.goto(unknown).status == 404
    assert check_page(stranger, "Acme Corporation") == []
    assert stranger.goto(unknown.replace("org=acme", "org=Beta%20%26%20Co")).status == 404
    assert check_page(stranger, "Beta & Co") == []  # no such organization: the slug as given
    other.close()

    page.fill("#code", code_for(uri))
    page.get_by_role("button", name="Turn on MFA").click()
    assert "MFA is now active" in page.locator("h1").inner_text()
    assert check_page(page, "Acme Corporation") == ["a"]  # the recovery codes' download link
    assert page.locator("ol.codes li").count() == 10
    assert page.goto(link).status == 410
    assert check_page(page, "Acme Corporation") == []
    context.close()
    assert users.user_status(app, "acme", "bob").mfa == "active"


def test_back_and_forward_after_opening_the_link_without_javascript_on_a_desktop(
    chromium: Any, served: tuple[App, Server, str]
) -> None:
    """JavaScript off (the pages need none) and a desktop window (the page a centred column)."""
    app, server, link = served
    context = chromium.new_context(
        java_script_enabled=False, viewport={"width": 1280, "height": 800}
    )
    page = context.new_page()
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.goto(link)
    page.get_by_role("button", name="Show my QR code").click()
    step = f"http://127.0.0.1:{server.port}/mfa/setup/step"
    assert page.url == step and posts == [link]
    secret, opened = secret_on(page), state(app)
    box = page.locator("main").bounding_box()
    assert box is not None and box["width"] <= 600  # a readable line, not the window's width
    assert abs(box["x"] - (1280 - box["x"] - box["width"])) <= 1  # centred

    for move in (page.go_back, page.go_forward, page.go_back, page.go_forward):
        move()
        page.wait_for_load_state()
        # the link again (back) redirects to its step; the step (forward) is the step: the
        # same secret each time, the token never sent again, the link as it was
        assert page.url == step and secret_on(page) == secret, move
        assert posts == [link] and state(app) == opened

    page.fill("#code", code_for(qr_of(page)))
    page.get_by_role("button", name="Turn on MFA").click()
    assert "MFA is now active for Acme Corporation" in page.locator("h1").inner_text()
    assert users.user_status(app, "acme", "bob").mfa == "active"
    context.close()
