"""Text normalisation for what members type on phones: full-width forms, Chinese punctuation, numerals, dates."""

from __future__ import annotations

import re
import unicodedata
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


def _numerals_to_digits(text: str) -> str:
    """Chinese numerals that count or rank something become digits: 报名三号 -> 报名3号, 第四个 -> 4个.

    Bare numerals inside words stay (张三, 李四 are names), so only a numeral followed by a counter word
    or preceded by 第 is converted.
    """

    def repl(m: re.Match[str]) -> str:
        value = cn_to_int(m.group(1))
        return str(value) if value is not None else m.group(0)

    text = _NUMERAL.sub(repl, text)
    return _ORDINAL.sub(repl, text)


def normalize(text: str, bot_names: tuple[str, ...] = ()) -> str:
    """The one normal form the router and handlers match against."""
    text = unicodedata.normalize("NFKC", text or "").translate(_PUNCT)
    for name in bot_names:
        text = text.replace(f"@{name}", " ")
    text = _MENTION.sub(" ", text) if text.lstrip().startswith("@") else text
    text = _numerals_to_digits(text)
    return re.sub(r"\s+", " ", text).strip()


def first_int(text: str) -> int | None:
    m = re.search(r"\d+", text)
    return int(m.group()) if m else None


_WEEKDAYS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6, "末": 5}


def parse_date(text: str, today: date) -> date | None:
    """Dates as members write them: 今天, 明天, 后天, 周六, 下周三, 12月5日, 12-05, 2027-01-03."""
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
    for word, days in (("今天", 0), ("明天", 1), ("后天", 2)):
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
