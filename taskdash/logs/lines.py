"""Pure: cutting container output into log lines."""

from __future__ import annotations

from collections.abc import Callable

MAX_LINE_CHARS = 16 * 1024


def split_lines(pending: str, chunk: str) -> tuple[list[str], str]:
    """Complete lines from `pending + chunk` and the unterminated rest.

    Over-long lines are cut at MAX_LINE_CHARS so memory stays bounded whatever is printed.
    """
    text = pending + chunk
    lines = text.split("\n")
    rest = lines.pop()
    out: list[str] = []
    for line in lines:
        out.extend(cut(line.removesuffix("\r")))
    # A trailing CR may be the first half of a CRLF: it does not count towards the cut.
    while len(rest.removesuffix("\r")) > MAX_LINE_CHARS:
        out.append(rest[:MAX_LINE_CHARS])
        rest = rest[MAX_LINE_CHARS:]
    return out, rest


def cut(line: str) -> list[str]:
    if len(line) <= MAX_LINE_CHARS:
        return [line]
    return [line[i : i + MAX_LINE_CHARS] for i in range(0, len(line), MAX_LINE_CHARS)]


MASK = "***"


def masker(secrets: list[str]) -> Callable[[str], str]:
    """Replaces every secret value in a line with ***; the longest first, so a secret that
    contains another is masked whole. Multi-line secrets are masked line by line."""
    parts = sorted(
        {part for secret in secrets for part in secret.splitlines() if part.strip()},
        key=len,
        reverse=True,
    )
    if not parts:
        return lambda line: line

    def mask(line: str) -> str:
        for part in parts:
            if part in line:
                line = line.replace(part, MASK)
        return line

    return mask
