"""Text normalisation for what members type on phones: full-width forms, Chinese punctuation, numerals, dates."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable
from datetime import date, timedelta
from typing import NamedTuple

# NFKC already folds full-width ASCII (１２３，ＡＢＣ) to half-width; these are the CJK marks it leaves alone.
_PUNCT = str.maketrans(
    {
        "，": ",",
        "。": ".",
        "、": ",",
        "；": ";",
        "：": ":",
        "？": "?",
        "！": "!",
        "（": "(",
        "）": ")",
        "【": "[",
        "】": "]",
        "「": '"',
        "」": '"',
        "“": '"',
        "”": '"',
        "‘": "'",
        "’": "'",
        "《": "<",
        "》": ">",
        "～": "~",
        "—": "-",
        "－": "-",
        "　": " ",
        "\u200b": "",
        "\ufeff": "",
    }
)

_DIGITS = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_UNITS = {"十": 10, "百": 100, "千": 1000}
_CN_NUM = "零〇一二两三四五六七八九十百千"
_NUMERAL = re.compile(rf"第?([{_CN_NUM}]+|\d+)(?=号|个|位|人|名|项|次|场|期|条|份|张|天|日|小时|周|月|岁)")
_ORDINAL = re.compile(rf"第([{_CN_NUM}]+|\d+)")
_MENTION = re.compile(r"@\S+\s*")


def cn_to_int(text: str) -> int | None:
    """'十二' -> 12, '二十五' -> 25, '两百' -> 200, '3' -> 3; None when it is not a number."""
    if text.isdigit():
        return int(text)
    if not text or any(ch not in _DIGITS and ch not in _UNITS for ch in text):
        return None
    if not any(ch in _UNITS for ch in text):  # 二零二七 reads digit by digit
        return int("".join(str(_DIGITS[ch]) for ch in text))
    total, current = 0, 0
    for ch in text:
        if ch in _DIGITS:
            current = _DIGITS[ch]
        else:
            total += (current or 1) * _UNITS[ch]
            current = 0
    return total + current


def _numeral_value(m: re.Match[str]) -> str:
    """Chinese numerals that count or rank something become digits: 报名三号 -> 报名3号, 第四个 -> 4个.

    Bare numerals inside words stay (张三, 李四 are names), so only a numeral followed by a counter word
    or preceded by 第 is converted.
    """
    value = cn_to_int(m.group(1))
    return str(value) if value is not None else m.group(0)


_EDGE = " ,.!?:;"  # what the router trims around a removed trigger (in the normal form)
_BLANKS = re.compile(r"\s+")
Char = tuple[str, int, int]  # a character of the normal form and the span of the typed text it came from


class Aligned:
    """A text in its normal form, and for every normal-form character the part of the typed text it came from.

    Matching works on `text`; what a member wrote is kept from `typed(...)`: 先写一个说明 stays as typed
    although the router saw 先写1个说明.
    """

    def __init__(self, source: str, chars: list[Char]):
        self.source = source
        self.chars = chars
        self.text = "".join(c for c, _, _ in chars)

    @classmethod
    def identity(cls, text: str) -> Aligned:
        """A text that is its own typed form (a message that carries no typed words)."""
        return cls(text, [(c, i, i + 1) for i, c in enumerate(text)])

    def typed(self, start: int = 0, end: int | None = None) -> str:
        """The typed words behind `text[start:end]`."""
        end = len(self.text) if end is None else end
        if start >= end:
            return ""
        return self.typed_without([(0, start), (end, len(self.text))])

    def typed_without(self, cuts: list[tuple[int, int]] | tuple[tuple[int, int], ...]) -> str:
        """The typed words without what stands behind the `cuts` of `text` (a trigger, a number): blanks are
        trimmed, punctuation only where something was cut (the member's own final 。 stays)."""
        n = len(self.chars)
        spans = sorted((self.chars[s][1], self.chars[e - 1][2]) for s, e in cuts if 0 <= s < e <= n)
        pieces: list[str] = []
        pos, after_cut = 0, False
        for a, b in spans:
            pieces.append(_trim(self.source[pos : max(a, pos)], left=after_cut, right=True))
            pos, after_cut = max(pos, b), True
        pieces.append(_trim(self.source[pos:], left=after_cut, right=False))
        return " ".join(p for p in pieces if p)


@functools.lru_cache(maxsize=4096)
def _folded(chunk: str) -> str:
    """A character (with its combining marks) in normal form: NFKC, then the CJK marks NFKC leaves alone."""
    return unicodedata.normalize("NFKC", chunk).translate(_PUNCT)


def _edge(ch: str) -> bool:
    folded = _folded(ch)
    return folded == "" or folded.isspace() or folded in _EDGE


def _trim(piece: str, left: bool, right: bool) -> str:
    """Blanks and invisible marks go at both ends; punctuation only at an end where something was cut."""
    piece = piece.strip()
    while piece and (_edge(piece[0]) if left else _folded(piece[0]) == ""):
        piece = piece[1:].lstrip()
    while piece and (_edge(piece[-1]) if right else _folded(piece[-1]) == ""):
        piece = piece[:-1].rstrip()
    return piece


def _sub(
    chars: list[Char], pattern: re.Pattern[str], repl: str | Callable[[re.Match[str]], str]
) -> list[Char]:
    """`pattern.sub(repl, text)` on aligned characters: a replacement comes from the whole span it replaces."""
    found = list(pattern.finditer("".join(c for c, _, _ in chars)))
    if not found:
        return chars
    out: list[Char] = []
    last = 0
    for m in found:
        new = repl(m) if callable(repl) else repl
        out.extend(chars[last : m.start()])
        if new == m.group(0):
            out.extend(chars[m.start() : m.end()])
        else:
            a, b = chars[m.start()][1], chars[m.end() - 1][2]
            out.extend((c, a, b) for c in new)
        last = m.end()
    out.extend(chars[last:])
    return out


def align(text: str, bot_names: tuple[str, ...] = ()) -> Aligned:
    """The normal form of `text` (see `normalize`), aligned with `text`."""
    text = text or ""
    chars: list[Char] = []
    start = 0
    for i in range(1, len(text) + 1):  # a character folds together with its combining marks
        if i == len(text) or not unicodedata.combining(text[i]):
            chars.extend((c, start, i) for c in _folded(text[start:i]))
            start = i
    for name in bot_names:
        if f"@{name}" in "".join(c for c, _, _ in chars):
            chars = _sub(chars, re.compile(re.escape(f"@{name}")), " ")
    if "".join(c for c, _, _ in chars).lstrip().startswith("@"):
        chars = _sub(chars, _MENTION, " ")
    chars = _sub(chars, _NUMERAL, _numeral_value)
    chars = _sub(chars, _ORDINAL, _numeral_value)
    chars = _sub(chars, _BLANKS, " ")
    first = next((i for i, (c, _, _) in enumerate(chars) if c != " "), len(chars))
    last = next((i for i in range(len(chars), 0, -1) if chars[i - 1][0] != " "), 0)
    return Aligned(text, chars[first:last] if first < last else [])


def normalize(text: str, bot_names: tuple[str, ...] = ()) -> str:
    """The one normal form the router and handlers match against."""
    return align(text, bot_names).text


_TYPED_MENTION = re.compile(r"\s*[@＠]\S+\s*")


def typed_words(text: str, bot_names: tuple[str, ...] = ()) -> str:
    """What the member wrote, as written, without our @-mention (nor the leading @-mentions `normalize` drops)
    and the blanks around: the source of every free text we keep. Its normal form is the message's text."""
    text = text or ""
    for name in bot_names:
        text = re.sub(rf"\s*[@＠]{re.escape(name)}\s*", " ", text)
    if re.match(r"\s*[@＠]", text):
        text = _TYPED_MENTION.sub(" ", text)
    return text.strip()


def first_int(text: str) -> int | None:
    m = re.search(r"\d+", text)
    return int(m.group()) if m else None


_WEEKDAYS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6, "末": 5}


def parse_date(text: str, today: date) -> date | None:
    """Dates as members write them: 今天, 明天, 后天, 大后天, 周六, 下周三, 下下周一, 12月5日, 12-05, 2027-01-03."""
    return find_date(text, today).day


_FULL_DATE = re.compile(r"(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})[日号]?")
_MONTH_DAY = re.compile(r"(\d{1,2})(?:月|-|/|\.)(\d{1,2})(?:日|号)?")
_WEEKDAY = re.compile(r"(下下|下|这|本)?(?:周|星期|礼拜)([一二三四五六日天末1-7])")


class FoundDate(NamedTuple):
    day: date | None
    rest: str  # the normalised text without the date words
    words: str = ""  # the date words as written


def find_date(text: str, today: date) -> FoundDate:
    """The date in a message and the text without it, so a date never reads as a number or a title word:
    报名12月5号的羽毛球 -> (12-05, "报名 的羽毛球", "12月5号")."""
    text = normalize(text)
    # 大后天 before the 后天 inside it
    for word, days in (("今天", 0), ("明天", 1), ("大后天", 3), ("后天", 2)):
        if word in text:
            return _found(today + timedelta(days=days), text, text.index(word), word)
    m = _FULL_DATE.search(text)
    if m:
        return _found(_safe_date(int(m[1]), int(m[2]), int(m[3])), text, m.start(), m[0])
    m = _MONTH_DAY.search(text)
    if m:
        d = _safe_date(today.year, int(m[1]), int(m[2]))
        if d and d < today - timedelta(days=31):
            d = _safe_date(today.year + 1, d.month, d.day)
        return _found(d, text, m.start(), m[0])
    m = _WEEKDAY.search(text)
    if m:
        key = m[2]
        wd = int(key) - 1 if key.isdigit() else _WEEKDAYS[key]
        weeks = {"下": 1, "下下": 2}.get(m[1] or "", 0)
        monday = today - timedelta(days=today.weekday())
        target = monday + timedelta(weeks=weeks, days=wd)
        if weeks == 0 and target < today:
            target += timedelta(weeks=1)
        return _found(target, text, m.start(), m[0])
    return FoundDate(None, text)


def _found(day: date | None, text: str, start: int, words: str) -> FoundDate:
    if day is None:  # 2月30日: not a date, and not a number either
        return FoundDate(None, text)
    rest = re.sub(r"\s+", " ", text[:start] + " " + text[start + len(words) :]).strip()
    return FoundDate(day, rest, words)


def _safe_date(y: int, m: int, d: int) -> date | None:
    try:
        return date(y, m, d)
    except ValueError:
        return None
