"""Pure: one log line with ANSI escape codes -> escaped HTML with colour classes.

SGR colours and styles become `<span class="...">` with the classes below (the stylesheet
defines them); every other escape sequence (cursor movement, erase, OSC titles and links,
charset switches) and stray control characters are dropped, so nothing shows as garbage.

Classes: `ansi-bold`, `ansi-italic`, `ansi-underline`, `ansi-fg-30`..`ansi-fg-37`,
`ansi-fg-90`..`ansi-fg-97`, `ansi-bg-40`..`ansi-bg-47`, `ansi-bg-100`..`ansi-bg-107`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from markupsafe import escape

# CSI (ESC [ params final), OSC (ESC ] ... BEL or ST), other two/three-byte ESC sequences.
ESCAPE = re.compile(
    r"\x1b\[(?P<params>[0-?]*)[ -/]*(?P<final>[@-~])"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[ -/]*[0-~]?"
    r"|\x9b[0-?]*[ -/]*[@-~]"
)
# C0/C1 controls other than tab; CR becomes a line break the page can show.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class Style:
    bold: bool = False
    italic: bool = False
    underline: bool = False
    fg: int | None = None
    bg: int | None = None

    def classes(self) -> str:
        names = [
            name
            for name, on in (
                ("ansi-bold", self.bold),
                ("ansi-italic", self.italic),
                ("ansi-underline", self.underline),
            )
            if on
        ]
        if self.fg is not None:
            names.append(f"ansi-fg-{self.fg}")
        if self.bg is not None:
            names.append(f"ansi-bg-{self.bg}")
        return " ".join(names)


PLAIN = Style()


def ansi_to_html(text: str) -> str:
    """Escaped HTML of `text`, its SGR styles as spans, other escape sequences removed."""
    parts: list[str] = []
    style = PLAIN
    position = 0
    for match in ESCAPE.finditer(text):
        parts.append(render(text[position : match.start()], style))
        if match.group("final") == "m":
            style = apply_sgr(style, match.group("params"))
        position = match.end()
    parts.append(render(text[position:], style))
    return "".join(parts)


def strip_ansi(text: str) -> str:
    """The text without escape sequences and control characters (for plain-text views)."""
    return clean(ESCAPE.sub("", text))


def clean(text: str) -> str:
    return CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def render(text: str, style: Style) -> str:
    body = str(escape(clean(text)))
    if not body:
        return ""
    classes = style.classes()
    return f'<span class="{classes}">{body}</span>' if classes else body


def apply_sgr(style: Style, params: str) -> Style:
    """The style after one `ESC [ params m` sequence (an empty list means reset)."""
    if any(c not in "0123456789;" for c in params):
        return style  # a private-mode sequence, not SGR
    codes = [int(p) if p else 0 for p in params.split(";")] if params else [0]
    index = 0
    while index < len(codes):
        style, index = apply_code(style, codes, index)
    return style


def apply_code(style: Style, codes: list[int], index: int) -> tuple[Style, int]:
    """Apply the code at `index`; answers the new style and the index of the next code."""
    code = codes[index]
    if code in (38, 48):
        return extended_colour(style, codes, index)
    return apply_simple(style, code), index + 1


def apply_simple(style: Style, code: int) -> Style:
    if code == 0:
        return PLAIN
    if code in (1, 22):
        return replace(style, bold=code == 1)
    if code in (3, 23):
        return replace(style, italic=code == 3)
    if code in (4, 24):
        return replace(style, underline=code == 4)
    if 30 <= code <= 37 or 90 <= code <= 97:
        return replace(style, fg=code)
    if code == 39:
        return replace(style, fg=None)
    if 40 <= code <= 47 or 100 <= code <= 107:
        return replace(style, bg=code)
    if code == 49:
        return replace(style, bg=None)
    return style


def extended_colour(style: Style, codes: list[int], index: int) -> tuple[Style, int]:
    """`38;5;n` / `48;5;n` (the 16 basic colours are kept) and `38;2;r;g;b` (skipped)."""
    base = 30 if codes[index] == 38 else 40
    mode = codes[index + 1] if index + 1 < len(codes) else None
    if mode == 5 and index + 2 < len(codes):
        colour = basic_colour(codes[index + 2], base)
        if colour is not None:
            style = replace(style, fg=colour) if base == 30 else replace(style, bg=colour)
        return style, index + 3
    if mode == 2:
        return style, index + 5
    return style, len(codes)


def basic_colour(number: int, base: int) -> int | None:
    """Palette entries 0-15 as SGR codes (30-37 / 90-97, or the background ones)."""
    if 0 <= number <= 7:
        return base + number
    if 8 <= number <= 15:
        return base + 60 + number - 8
    return None
