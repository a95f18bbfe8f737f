"""ansi_to_html: escaped text, SGR styles as classes, every other escape sequence dropped."""

from __future__ import annotations

import pytest

from taskdash.logs.ansi import ansi_to_html, strip_ansi

ESC = "\x1b"


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("plain", "plain"),
        ("", ""),
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("a & b \"c\" 'd'", "a &amp; b &#34;c&#34; &#39;d&#39;"),
        (f"{ESC}[31mred{ESC}[0m", '<span class="ansi-fg-31">red</span>'),
        (f"{ESC}[1;32mok{ESC}[m done", '<span class="ansi-bold ansi-fg-32">ok</span> done'),
        (f"{ESC}[3mi{ESC}[23m", '<span class="ansi-italic">i</span>'),
        (f"{ESC}[4mu{ESC}[24mv", '<span class="ansi-underline">u</span>v'),
        (f"{ESC}[1mb{ESC}[22mn", '<span class="ansi-bold">b</span>n'),
        (f"{ESC}[97;104mx", '<span class="ansi-fg-97 ansi-bg-104">x</span>'),
        (f"{ESC}[41mbg{ESC}[49mno", '<span class="ansi-bg-41">bg</span>no'),
        (f"{ESC}[90mgrey{ESC}[39mdefault", '<span class="ansi-fg-90">grey</span>default'),
        (
            f"{ESC}[31ma{ESC}[1mb",
            '<span class="ansi-fg-31">a</span><span class="ansi-bold ansi-fg-31">b</span>',
        ),
        (f"{ESC}[38;5;9mhi", '<span class="ansi-fg-91">hi</span>'),
        (f"{ESC}[48;5;2mhi", '<span class="ansi-bg-42">hi</span>'),
        (f"{ESC}[38;5;200mhi", "hi"),
        (f"{ESC}[38;2;10;20;30;1mhi", '<span class="ansi-bold">hi</span>'),
        (f"{ESC}[31m<b>{ESC}[0m", '<span class="ansi-fg-31">&lt;b&gt;</span>'),
        (f"{ESC}[2K{ESC}[1Gprogress", "progress"),
        (f"{ESC}[?25lhidden cursor{ESC}[?25h", "hidden cursor"),
        (f"{ESC}]0;window title\x07text", "text"),
        (f"{ESC}]8;;http://x{ESC}\\link{ESC}]8;;{ESC}\\", "link"),
        (f"{ESC}(Bcharset", "charset"),
        ("bell\x07 back\x08 nul\x00", "bell back nul"),
        ("tab\there", "tab\there"),
        ("10%\r20%", "10%\n20%"),
        (f"{ESC}[>4;2mkeys", "keys"),
        (f"cut {ESC}", "cut "),
    ],
)
def test_ansi_to_html(text: str, html: str) -> None:
    assert ansi_to_html(text) == html


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        (f"{ESC}[1;31mred{ESC}[0m <b>", "red <b>"),
        (f"{ESC}]0;t\x07x{ESC}[Ky", "xy"),
    ],
)
def test_strip_ansi(text: str, plain: str) -> None:
    assert strip_ansi(text) == plain
