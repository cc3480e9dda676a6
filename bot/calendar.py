"""The union's calendar: festivals, birthdays (solar and lunar) and working days.

Conversions come from tyme4py (astronomical, raises on impossible lunar dates); the festival list is our own,
so the library's festival names never decide anything. Rules (see docs in ../shared/notes/calendar-and-scheduler.md):

* A festival rule is one of ``solar:M-D``, ``lunar:M-D`` (the ordinary, non-leap month), ``term:清明`` (a solar
  term) or ``spring:N`` (春节 + N days). 除夕 is ``spring:-1`` — never lunar 12/30, which does not exist in the
  seven of 2025–2035 whose 腊月 has 29 days.
* Birthdays: a solar 2-29 is celebrated on 2-28 in common years; a lunar day 30 in a 29-day month on day 29;
  a birthday in a leap month in the ordinary month of that number (once a year, never twice).
* "Is it X's birthday today" converts today (the union's zone) to its lunar year and asks for the birthday of
  that lunar year, so a 腊月 birthday that falls in January is found.
* Working days come from chinesecalendar (statutory holidays and 调休). A year it does not know falls back to
  Monday–Friday, and `holiday_data_warning()` says so for the console — never a silent guess.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING

import chinese_calendar
from tyme4py.lunar import LunarDay, LunarMonth
from tyme4py.solar import SolarDay, SolarTerm

if TYPE_CHECKING:
    from models.member import Member

log = logging.getLogger(__name__)

# Audiences a festival can address. Each maps to a predicate on Member (see `in_audience`).
AUDIENCES = {
    "all": "全体会员",
    "women": "女职工",
    "nurses": "护理人员（职务含“护”）",
    "teachers": "教师（职务含“教师/老师/讲师/教授/带教”）",
    "retirees": "离退休职工",
    "youth": "青年职工（35岁以下）",
    "parents": "有子女的职工（花名册“有子女”为“是”）",
    "delegates": "职工代表",
}
DELIVERIES = ("private", "group", "both")
TEACHER_WORDS = ("教师", "老师", "讲师", "教授", "带教", "教员")
SOLAR_TERMS = tuple(SolarTerm.NAMES)


@dataclass(frozen=True)
class FestivalDef:
    code: str
    name: str
    rule: str  # solar:M-D | lunar:M-D | term:NAME | spring:N
    audience: str = "all"
    delivery: str = "private"  # private | group | both
    template: str = ""
    shift_to_workday: bool = False  # send on the last working day on or before the date


FESTIVALS: tuple[FestivalDef, ...] = (
    FestivalDef(
        "yuandan", "元旦", "solar:1-1", template="新年好！工会祝大家新的一年身体健康、工作顺利、阖家幸福！"
    ),
    FestivalDef(
        "chuxi",
        "除夕",
        "spring:-1",
        delivery="group",
        template="辞旧迎新，工会给大家拜年啦！祝全体会员除夕快乐，阖家团圆！",
    ),
    FestivalDef(
        "chunjie",
        "春节",
        "spring:0",
        template="新春快乐！工会祝大家和家人在新的一年里平安健康、万事如意！",
    ),
    FestivalDef(
        "yuanxiao",
        "元宵节",
        "lunar:1-15",
        delivery="group",
        template="元宵佳节，月圆人圆。祝大家元宵节快乐，团团圆圆！",
    ),
    FestivalDef(
        "funv",
        "三八妇女节",
        "solar:3-8",
        audience="women",
        template="{name}，节日快乐！感谢您在工作和家庭中的付出，祝您美丽健康、幸福常在！",
    ),
    FestivalDef(
        "qingming",
        "清明",
        "term:清明",
        delivery="group",
        template="清明时节，缅怀先人。出行祭扫请注意安全，文明祭扫。",
    ),
    FestivalDef("laodong", "劳动节", "solar:5-1", template="劳动节快乐！感谢大家的辛勤付出，假期注意休息。"),
    FestivalDef(
        "qingnian",
        "青年节",
        "solar:5-4",
        audience="youth",
        template="{name}，五四青年节快乐！愿您青春飞扬、勇于担当！",
    ),
    FestivalDef(
        "hushi",
        "护士节",
        "solar:5-12",
        audience="nurses",
        template="{name}，护士节快乐！白衣天使辛苦了，感谢您对患者的悉心守护！",
    ),
    FestivalDef(
        "ertong",
        "儿童节",
        "solar:6-1",
        audience="parents",
        template="{name}，六一儿童节快乐！祝您的孩子健康快乐成长！",
    ),
    FestivalDef("duanwu", "端午节", "lunar:5-5", template="端午安康！工会祝大家和家人节日快乐、身体健康！"),
    FestivalDef(
        "jiandang", "建党节", "solar:7-1", delivery="group", template="热烈庆祝中国共产党成立纪念日！"
    ),
    FestivalDef(
        "jianjun",
        "建军节",
        "solar:8-1",
        delivery="group",
        template="八一建军节，向全体退役军人职工致以节日的问候！",
    ),
    FestivalDef(
        "jiaoshi",
        "教师节",
        "solar:9-10",
        audience="teachers",
        template="{name}，教师节快乐！感谢您教书育人、传道授业！",
    ),
    FestivalDef("zhongqiu", "中秋节", "lunar:8-15", template="中秋快乐！月圆人团圆，工会祝大家阖家幸福！"),
    FestivalDef("guoqing", "国庆节", "solar:10-1", template="国庆节快乐！工会祝大家假期愉快，出行注意安全。"),
    FestivalDef(
        "chongyang",
        "重阳节",
        "lunar:9-9",
        audience="retirees",
        template="{name}，重阳节快乐！工会祝您福寿安康、晚年幸福！",
    ),
)
FESTIVALS_BY_CODE = {f.code: f for f in FESTIVALS}


class RuleError(ValueError):
    """A festival rule that cannot be parsed (shown to staff editing festivals)."""


def parse_rule(rule: str) -> tuple[str, tuple]:
    """``"lunar:5-5"`` -> ("lunar", (5, 5)); raises RuleError with a readable message."""
    kind, _, arg = (rule or "").strip().partition(":")
    try:
        if kind in ("solar", "lunar"):
            m, d = (int(x) for x in arg.split("-"))
            limit = 31 if kind == "solar" else 30
            if not (1 <= m <= 12 and 1 <= d <= limit):
                raise RuleError(f"日期超出范围：{rule}")
            if kind == "solar":
                date(2024, m, d)  # validate against a leap year
            return kind, (m, d)
        if kind == "term":
            if arg not in SolarTerm.NAMES:
                raise RuleError(f"未知节气：{arg}")
            return kind, (arg,)
        if kind == "spring":
            return kind, (int(arg),)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, RuleError):
            raise
        raise RuleError(f"无法识别的规则：{rule}") from None
    raise RuleError(f"无法识别的规则：{rule}（应为 solar:M-D、lunar:M-D、term:节气 或 spring:N）")


def rule_label(rule: str) -> str:
    """A rule in words for the console: 公历5月12日, 农历8月15日, 节气清明, 春节前1天."""
    try:
        kind, args = parse_rule(rule)
    except RuleError:
        return f"无效规则（{rule}）"
    if kind in ("solar", "lunar"):
        return f"{'公历' if kind == 'solar' else '农历'}{args[0]}月{args[1]}日"
    if kind == "term":
        return f"节气{args[0]}"
    n = args[0]
    return "春节当天" if n == 0 else f"春节{'前' if n < 0 else '后'}{abs(n)}天"


def _solar(sd: SolarDay) -> date:
    return date(sd.get_year(), sd.get_month(), sd.get_day())


@lru_cache(maxsize=512)
def lunar_to_solar(lunar_year: int, month: int, day: int, leap: bool = False) -> date:
    """Strict conversion: raises ValueError for an impossible lunar date (tyme4py checks)."""
    return _solar(LunarDay.from_ymd(lunar_year, -month if leap else month, day).get_solar_day())


@lru_cache(maxsize=256)
def spring_festival(year: int) -> date:
    return lunar_to_solar(year, 1, 1)


@lru_cache(maxsize=1024)
def date_for_rule(rule: str, year: int) -> date | None:
    """The solar date of a rule in a (solar) year; None for a solar 2-29 in a common year."""
    kind, args = parse_rule(rule)
    if kind == "solar":
        m, d = args
        try:
            return date(year, m, d)
        except ValueError:
            return None
    if kind == "lunar":
        m, d = args
        # The occurrence that falls in this solar year: usually lunar year `year`; a 腊月/冬月 date may belong to
        # the lunar year before (it spills into January). Day 30 in a 29-day month becomes 29.
        for ly in (year - 1, year, year + 1):
            got = lunar_to_solar(ly, m, min(d, LunarMonth.from_ym(ly, m).get_day_count()))
            if got.year == year:
                return got
        return None
    if kind == "term":
        return _solar(SolarTerm.from_name(year, args[0]).get_julian_day().get_solar_day())
    return spring_festival(year) + timedelta(days=args[0])


def festival_date(code: str, year: int) -> date | None:
    return date_for_rule(FESTIVALS_BY_CODE[code].rule, year)


def lunar_of(day: date) -> tuple[int, int, int, bool]:
    """(lunar year, month, day, is_leap) of a solar date."""
    ld = SolarDay.from_ymd(day.year, day.month, day.day).get_lunar_day()
    return ld.get_year(), abs(ld.get_month()), ld.get_day(), ld.get_lunar_month().is_leap()


@lru_cache(maxsize=1024)
def lunar_month_days(lunar_year: int, month: int) -> int:
    """Days in the ordinary month `month` of a lunar year (29 or 30)."""
    return LunarMonth.from_ym(lunar_year, month).get_day_count()


# birthdays ---------------------------------------------------------------------------------------------------
def lunar_birthday_in(lunar_year: int, month: int, day: int) -> date:
    """The ordinary month `month` of `lunar_year` (a leap-month birthday is kept in the ordinary month);
    day 30 in a 29-day month becomes 29."""
    day = min(day, lunar_month_days(lunar_year, month))
    return lunar_to_solar(lunar_year, month, day)


def solar_birthday_in(year: int, birth: date) -> date:
    if birth.month == 2 and birth.day == 29:
        try:
            return date(year, 2, 29)
        except ValueError:
            return date(year, 2, 28)
    return date(year, birth.month, birth.day)


def lunar_birth(member: Member) -> tuple[int, int, bool] | None:
    """The lunar (month, day, leap) a member celebrates, or None for a solar birthday / unknown."""
    if not member.birthday_is_lunar or not member.lunar_birth_month or not member.lunar_birth_day:
        return None
    return member.lunar_birth_month, member.lunar_birth_day, bool(member.lunar_birth_leap)


def birthday_on(member: Member, year: int) -> date | None:
    """The solar date of the member's birthday celebrated in `year`.

    For a solar birthday `year` is the solar year; for a lunar birthday it is the LUNAR year (a 腊月 birthday of
    lunar year 2025 falls in January/February 2026). None when the roster has no birthday.
    """
    lunar = lunar_birth(member)
    if lunar is not None:
        return lunar_birthday_in(year, lunar[0], lunar[1])
    if member.birthday is None:
        return None
    return solar_birthday_in(year, member.birthday)


def is_birthday(member: Member, day: date) -> bool:
    if lunar_birth(member) is not None:
        return birthday_on(member, lunar_of(day)[0]) == day
    return birthday_on(member, day.year) == day


def birthdays_in_range(member: Member, start: date, end: date) -> list[date]:
    """Every celebrated birthday between start and end inclusive (for previews)."""
    out = []
    years = range(start.year - 1, end.year + 1)
    for y in years:
        try:
            d = birthday_on(member, y)
        except ValueError:
            continue
        if d is not None and start <= d <= end:
            out.append(d)
    return sorted(set(out))


def age_on(member: Member, day: date) -> int | None:
    """Years completed at the birthday celebrated on `day` (lunar members: lunar years). Never shown to anyone;
    used only to pick the milestone template."""
    if member.birthday is None:
        return None
    if lunar_birth(member) is not None:
        return lunar_of(day)[0] - lunar_of(member.birthday)[0]
    return day.year - member.birthday.year


def is_milestone(age: int | None) -> bool:
    return age is not None and age >= 20 and age % 10 == 0


# audiences -----------------------------------------------------------------------------------------------------
def in_audience(member: Member, audience: str, day: date | None = None) -> bool:
    title = member.job_title or ""
    if audience == "all":
        return True
    if audience == "women":
        return member.gender == "女"
    if audience == "nurses":
        return "护" in title
    if audience == "teachers":
        return any(w in title for w in TEACHER_WORDS)
    if audience == "retirees":
        return bool(member.retired)
    if audience == "delegates":
        return bool(member.is_delegate)
    if audience == "youth":
        if member.birthday is None or member.retired:
            return False
        day = day or date.today()
        return (day.year - member.birthday.year) <= 35
    if audience == "parents":
        return bool(member.has_children)  # not known (blank in the roster): not sent, see audience_unknown
    return False


# working days ------------------------------------------------------------------------------------------------
_unknown_years: set[int] = set()


def is_workday(day: date) -> bool:
    """Statutory working day (调休 included). Unknown years: Monday–Friday, and the year is remembered for the
    console warning."""
    try:
        return chinese_calendar.is_workday(day)
    except NotImplementedError:
        if day.year not in _unknown_years:
            log.warning("no holiday data for %s: falling back to Monday-Friday", day.year)
            _unknown_years.add(day.year)
        return day.weekday() < 5


def holiday_data_known(year: int) -> bool:
    try:
        chinese_calendar.is_workday(date(year, 6, 1))
    except NotImplementedError:
        return False
    return True


def holiday_data_warning(today: date) -> str | None:
    """A sentence for the console when the holiday calendar does not cover this year (or, from November on,
    next year), else None."""
    years = {today.year, *(y for y in _unknown_years if y <= today.year + 1)}
    missing = [y for y in sorted(years) if y >= today.year and not holiday_data_known(y)]
    if today.month >= 11 and not holiday_data_known(today.year + 1) and today.year + 1 not in missing:
        missing.append(today.year + 1)
    if not missing:
        return None
    years = "、".join(str(y) for y in missing)
    return (
        f"节假日数据缺少 {years} 年（chinesecalendar 尚未收录国务院放假安排）：这些年份暂按周一至周五为工作日计算，"
        "调休和法定假日不会被识别。请升级 chinesecalendar 或录入当年放假安排。"
    )


def last_workday_on_or_before(day: date) -> date:
    d = day
    for _ in range(40):
        if is_workday(d):
            return d
        d -= timedelta(days=1)
    return day
