"""Festival dates against an independent table, birthday rules, working days."""

from __future__ import annotations

from datetime import date

import pytest

from bot import calendar as cal
from models.member import Member

# Independent source: ../shared/notes/calendar-and-scheduler.md section 2, computed by seven libraries that all
# agree (and cross-checked with `holidays` and chinesecalendar). year: 春节, 除夕, 端午, 中秋, 重阳, 清明, 元宵.
TABLE = {
    2024: ("02-10", "02-09", "06-10", "09-17", "10-11", "04-04", "02-24"),
    2025: ("01-29", "01-28", "05-31", "10-06", "10-29", "04-04", "02-12"),
    2026: ("02-17", "02-16", "06-19", "09-25", "10-18", "04-05", "03-03"),
    2027: ("02-06", "02-05", "06-09", "09-15", "10-08", "04-05", "02-20"),
    2028: ("01-26", "01-25", "05-28", "10-03", "10-26", "04-04", "02-09"),
    2029: ("02-13", "02-12", "06-16", "09-22", "10-16", "04-04", "02-27"),
    2030: ("02-03", "02-02", "06-05", "09-12", "10-05", "04-05", "02-17"),
    2031: ("01-23", "01-22", "06-24", "10-01", "10-24", "04-05", "02-06"),
    2032: ("02-11", "02-10", "06-12", "09-19", "10-12", "04-04", "02-25"),
    2033: ("01-31", "01-30", "06-01", "09-08", "10-01", "04-04", "02-14"),
    2034: ("02-19", "02-18", "06-20", "09-27", "10-20", "04-05", "03-05"),
    2035: ("02-08", "02-07", "06-10", "09-16", "10-09", "04-05", "02-22"),
}
CODES = ("chunjie", "chuxi", "duanwu", "zhongqiu", "chongyang", "qingming", "yuanxiao")
SOLAR = {
    "yuandan": (1, 1), "funv": (3, 8), "laodong": (5, 1), "qingnian": (5, 4), "hushi": (5, 12),
    "ertong": (6, 1), "jiandang": (7, 1), "jianjun": (8, 1), "jiaoshi": (9, 10), "guoqing": (10, 1),
}  # fmt: skip
# 腊月 has 29 days before these 春节 (the 除夕 trap: lunar 12/30 does not exist).
SHORT_LAYUE = (2025, 2026, 2027, 2028, 2029, 2031, 2032)


@pytest.mark.parametrize("year", range(2024, 2036))
def test_lunar_and_term_festivals_match_independent_table(year):
    for code, mmdd in zip(CODES, TABLE[year], strict=True):
        assert cal.festival_date(code, year) == date.fromisoformat(f"{year}-{mmdd}"), (code, year)


@pytest.mark.parametrize("year", range(2025, 2036))
def test_solar_festivals(year):
    for code, (m, d) in SOLAR.items():
        assert cal.festival_date(code, year) == date(year, m, d)


def test_every_builtin_festival_has_a_date_each_year():
    assert len(cal.FESTIVALS) == 17
    for year in range(2025, 2036):
        for f in cal.FESTIVALS:
            assert cal.festival_date(f.code, year) is not None


@pytest.mark.parametrize("year", SHORT_LAYUE)
def test_chuxi_in_years_with_a_29_day_layue(year):
    with pytest.raises(ValueError):
        cal.lunar_to_solar(year - 1, 12, 30)  # the trap: this date does not exist
    eve = cal.festival_date("chuxi", year)
    assert eve == cal.spring_festival(year).replace() - (cal.spring_festival(year) - eve)
    assert (cal.spring_festival(year) - eve).days == 1
    assert cal.lunar_of(eve)[1:] == (12, 29, False)


def test_duanwu_ignores_leap_fifth_month_2028():
    assert cal.festival_date("duanwu", 2028) == date(2028, 5, 28)
    assert cal.lunar_of(date(2028, 6, 27))[1:] == (5, 5, True)  # 闰五月初五 is not 端午


def test_rules_parse_and_reject():
    assert cal.parse_rule("lunar:5-5") == ("lunar", (5, 5))
    assert cal.parse_rule("spring:-1") == ("spring", (-1,))
    assert cal.date_for_rule("lunar:12-8", 2026) == date(2026, 1, 26)  # 腊八 of lunar 2025
    for bad in ("lunar:13-1", "solar:2-30", "term:春天", "weekly:1", ""):
        with pytest.raises(cal.RuleError):
            cal.parse_rule(bad)


def _m(**kw) -> Member:
    base = dict(name="测试", employee_no="X", birthday_is_lunar=False, lunar_birth_leap=False)
    return Member(**{**base, **kw})


def test_lunar_day_30_moves_to_29_in_short_months():
    # lunar 1985-12-30 (腊月三十): greeted every year, on 廿九 when 腊月 has 29 days (section 6).
    m = _m(birthday=date(1986, 2, 8), birthday_is_lunar=True, lunar_birth_month=12, lunar_birth_day=30)
    got = [cal.birthday_on(m, ly) for ly in range(2024, 2030)]
    assert got == [
        date(2025, 1, 28), date(2026, 2, 16), date(2027, 2, 5), date(2028, 1, 25), date(2029, 2, 12),
        date(2030, 2, 2),
    ]  # fmt: skip
    assert cal.is_birthday(m, date(2026, 2, 16))  # found via today's LUNAR year (2025)
    assert not cal.is_birthday(m, date(2026, 2, 17))


def test_leap_month_birthday_celebrated_in_ordinary_month_once():
    m = _m(birthday=date(2023, 4, 5), birthday_is_lunar=True, lunar_birth_month=2, lunar_birth_day=15,
           lunar_birth_leap=True)  # fmt: skip
    assert cal.birthday_on(m, 2024) == date(2024, 3, 24)
    assert cal.birthday_on(m, 2025) == date(2025, 3, 14)
    # 2023 has 闰二月: still only the ordinary month, never two greetings
    assert cal.birthdays_in_range(m, date(2023, 1, 1), date(2023, 12, 31)) == [date(2023, 3, 6)]
    assert not cal.is_birthday(m, date(2023, 4, 5))


def test_leap_sixth_month_2025_and_strict_conversion():
    assert cal.lunar_to_solar(2025, 6, 1, leap=True) == date(2025, 7, 25)
    assert cal.lunar_to_solar(2025, 6, 15) == date(2025, 7, 9)
    with pytest.raises(ValueError):
        cal.lunar_to_solar(2025, 6, 30, leap=True)
    with pytest.raises(ValueError):
        cal.lunar_to_solar(2024, 6, 1, leap=True)


def test_feb_29_falls_on_feb_28_in_common_years():
    m = _m(birthday=date(1996, 2, 29))
    assert cal.birthday_on(m, 2026) == date(2026, 2, 28)
    assert cal.birthday_on(m, 2027) == date(2027, 2, 28)
    assert cal.birthday_on(m, 2028) == date(2028, 2, 29)
    assert cal.is_birthday(m, date(2026, 2, 28))
    assert not cal.is_birthday(m, date(2028, 2, 28))


def test_milestone_age_solar_and_lunar():
    assert cal.age_on(_m(birthday=date(1986, 6, 1)), date(2026, 6, 1)) == 40
    assert cal.is_milestone(40) and cal.is_milestone(60) and not cal.is_milestone(41)
    lunar = _m(birthday=date(1986, 2, 8), birthday_is_lunar=True, lunar_birth_month=12, lunar_birth_day=30)
    # born lunar 1985; the 腊月 birthday of lunar 2025 (solar 2026-02-16) completes 40 lunar years
    assert cal.age_on(lunar, date(2026, 2, 16)) == 40


def test_audiences():
    nurse = _m(gender="女", job_title="主管护师")
    teacher = _m(gender="男", job_title="带教老师")
    retiree = _m(gender="男", retired=True, birthday=date(1950, 1, 1))
    assert cal.in_audience(nurse, "women") and cal.in_audience(nurse, "nurses")
    assert not cal.in_audience(teacher, "women") and not cal.in_audience(teacher, "nurses")
    assert cal.in_audience(teacher, "teachers") and not cal.in_audience(nurse, "teachers")
    assert cal.in_audience(retiree, "retirees") and not cal.in_audience(nurse, "retirees")
    assert not cal.in_audience(retiree, "youth", date(2026, 5, 4))
    assert cal.in_audience(_m(birthday=date(1998, 1, 1)), "youth", date(2026, 5, 4))
    # 六一: only members the roster marks as having children; unknown (None) is not "yes"
    assert cal.in_audience(_m(has_children=True), "parents")
    assert not cal.in_audience(_m(has_children=False), "parents")
    assert not cal.in_audience(_m(), "parents")


def test_workdays_and_adjusted_days():
    assert not cal.is_workday(date(2026, 10, 1))  # 国庆
    assert cal.is_workday(date(2026, 2, 14))  # a Saturday made a working day (调休)
    assert cal.last_workday_on_or_before(date(2026, 10, 3)) == date(2026, 9, 30)
    assert cal.last_workday_on_or_before(date(2026, 9, 30)) == date(2026, 9, 30)


def test_unknown_year_falls_back_to_weekdays_and_is_reported():
    if cal.holiday_data_known(2031):
        pytest.skip("chinesecalendar knows 2031 now")
    assert cal.is_workday(date(2031, 1, 1))  # a Wednesday: 元旦 is not known, so Monday–Friday
    assert not cal.is_workday(date(2031, 1, 4))  # a Saturday
    warning = cal.holiday_data_warning(date(2031, 3, 1))
    assert warning and "2031" in warning and "周一至周五" in warning
    assert cal.holiday_data_warning(date(2026, 3, 1)) is None
    assert "2027" in (cal.holiday_data_warning(date(2026, 11, 25)) or "")
