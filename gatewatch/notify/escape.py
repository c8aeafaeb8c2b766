"""Escaping of log content for Slack mrkdwn and for the terminal.

Log content (user agents, paths, users) is attacker-controlled, so every
value taken from an alert passes through these functions before it reaches
a message. Control and invisible format characters become visible escapes,
so a user agent of ``"\\x1b[2J"`` shows as the six characters ``\\x1b[2J``
and a right-to-left override cannot reorder what an analyst reads.
"""

from __future__ import annotations

import unicodedata

# Categories shown as escapes: Cc control characters (C0, DEL, C1), Cf
# invisible format characters (bidi overrides, zero-width spaces, BOM),
# Cs lone surrogates (from surrogateescape decoding), Zl/Zp line and
# paragraph separators.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})

_NAMED_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}

# Slack reserves these three characters for its own markup: `<!channel>`,
# `<@U123>` and `<https://x|label>` are parsed from them.
_MRKDWN_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}

# Inside a code span or block a backtick could end the code early, after
# which the rest of the value would be formatted as mrkdwn.
_BACKTICK_ESCAPE = "\\x60"


def visible_char(char: str) -> str:
    """Return ``char`` itself, or its escape when it is a control or invisible character."""
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    if unicodedata.category(char) not in _HIDDEN_CATEGORIES:
        return char
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def make_visible(value: object) -> str:
    """Convert ``value`` to one line of text with hidden characters shown as escapes.

    Tab, newline and carriage return become ``\\t``, ``\\n`` and ``\\r``; other
    control and format characters become ``\\xHH``, ``\\uXXXX`` or
    ``\\UXXXXXXXX``. A backslash already in the value is kept as it is, so a
    log line that contains the text ``\\x1b`` reads the same as one that
    contained the escape character.
    """
    text = "" if value is None else str(value)
    return "".join(visible_char(char) for char in text)


def slack_length(text: str) -> int:
    """Count ``text`` in UTF-16 code units.

    NOTE: Slack does not document how it counts characters for its limits.
    UTF-16 units are never fewer than code points, so a text that fits by
    this count also fits by a code-point count.
    """
    return len(text.encode("utf-16-le")) // 2


def truncation_marker(omitted: int) -> str:
    """Return the marker that ends a value cut short by ``omitted`` characters."""
    return f"… [{omitted} more chars]"


def _escape_within(text: str, token_of, limit: int | None, measure) -> str:
    """Escape ``text`` character by character and cut the result to ``limit`` units.

    The cut never falls inside the escaped form of one character, so it never
    splits an entity such as ``&amp;`` or an escape such as ``\\x1b``. When
    cut, the result ends with :func:`truncation_marker`.
    """
    # Each character escapes to at least one unit, so no more than ``limit``
    # characters can be kept; escaping only those keeps huge values cheap.
    head = text if limit is None else text[: limit + 1]
    tokens = [token_of(char) for char in head]
    joined = "".join(tokens)
    if limit is None or (len(head) == len(text) and measure(joined) <= limit):
        return joined
    kept_tokens: list[str] = []
    used = 0
    for index, token in enumerate(tokens):
        marker = truncation_marker(len(text) - index)
        token_length = measure(token)
        if used + token_length + measure(marker) > limit:
            return "".join(kept_tokens) + marker
        kept_tokens.append(token)
        used += token_length
    return "".join(kept_tokens) + truncation_marker(len(text) - len(tokens))


def truncate_visible(value: object, limit: int) -> str:
    """Apply :func:`make_visible` and cut the result to at most ``limit`` characters."""
    text = "" if value is None else str(value)
    return _escape_within(text, visible_char, limit, len)


def _mrkdwn_token(char: str, in_code: bool) -> str:
    if char in _MRKDWN_ENTITIES:
        return _MRKDWN_ENTITIES[char]
    if in_code and char == "`":
        return _BACKTICK_ESCAPE
    return visible_char(char)


def escape_mrkdwn(value: object, limit: int | None = None) -> str:
    """Escape ``value`` for Slack mrkdwn text outside code.

    ``&``, ``<`` and ``>`` become entities, so nothing in the value can ping a
    channel, mention a user or form a link. Hidden characters become visible
    escapes. With ``limit``, the escaped text is cut to at most that many
    UTF-16 units, marker included.
    """
    text = "" if value is None else str(value)
    return _escape_within(text, lambda char: _mrkdwn_token(char, in_code=False), limit, slack_length)


def escape_mrkdwn_code(value: object, limit: int | None = None) -> str:
    """Escape ``value`` for use inside a Slack code span or code block.

    Does what :func:`escape_mrkdwn` does and also replaces each backtick with
    the text ``\\x60``, so the value cannot close the code and have the rest
    formatted as mrkdwn.
    """
    text = "" if value is None else str(value)
    return _escape_within(text, lambda char: _mrkdwn_token(char, in_code=True), limit, slack_length)


def join_lines_within(lines: list[str], limit: int, separator: str = "\n") -> str:
    """Join whole ``lines`` up to ``limit`` UTF-16 units and note how many were left out.

    Each line must already fit the limit on its own; a line that does not is
    left out with the rest.
    """
    kept_lines: list[str] = []
    used = 0
    for index, line in enumerate(lines):
        remaining = len(lines) - index
        extra = slack_length(line) + (slack_length(separator) if kept_lines else 0)
        marker = f"{separator}… {remaining - 1} more" if remaining > 1 else ""
        if used + extra + slack_length(marker) > limit:
            note = f"… {remaining} more"
            if kept_lines:
                return separator.join(kept_lines) + separator + note
            return note
        kept_lines.append(line)
        used += extra
    return separator.join(kept_lines)
