"""Normalisation of what members type: full-width forms, punctuation, numerals, @-mentions, dates."""

from datetime import date

import pytest

from bot.normalize import align, cn_to_int, find_date, first_int, normalize, parse_date, typed_words


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("报名４", "报名4"),
        ("ＡＢＣ　１２３", "ABC 123"),
        ("乒乓球　+1！", "乒乓球 +1!"),
        ("好的，谢谢。", "好的,谢谢."),
        ("“秋游”（带家属）", '"秋游"(带家属)'),
        ("报名三号", "报名3号"),
        ("报名第四个", "报名4个"),
        ("报名 四号活动", "报名 4号活动"),
        ("秋游带两人", "秋游带2人"),
        ("第十二个", "12个"),
        ("代报名 3 张三 李四", "代报名 3 张三 李四"),  # names keep their numerals
        ("  多个   空格\t和\n换行 ", "多个 空格 和 换行"),
        ("\u200b报名\ufeff1", "报名1"),
    ],
)
def test_normalize(raw, expected):
    assert normalize(raw) == expected


def test_mention_of_the_bot_is_stripped_anywhere():
    assert normalize("@工会小助手 报名 3", ("工会小助手",)) == "报名 3"
    assert normalize("报名 3 @工会小助手", ("工会小助手",)) == "报名 3"
    assert normalize("@RobotA hello robot") == "hello robot"  # a leading mention of any name


@pytest.mark.parametrize(
    ("raw", "typed"),
    [
        ("@工会小助手 先写一个说明", "先写一个说明"),
        ("＠工会小助手　三号，见！ ", "三号，见！"),
        ("请 @工会小助手 帮我 ", "请 帮我"),
        ("@张三 @工会小助手 报名 三号", "报名 三号"),  # normalize drops leading @-mentions of anyone
        ("  全角：１２３。  ", "全角：１２３。"),
    ],
)
def test_typed_words_keep_what_was_written_and_normalise_like_the_message(raw, typed):
    names = ("工会小助手",)
    assert typed_words(raw, names) == typed
    assert normalize(typed, names) == normalize(raw, names)


def test_aligned_text_maps_back_to_what_was_typed():
    a = align("提案：先写一个说明，第三条　要（加急）。")
    assert a.text == "提案:先写1个说明,3条 要(加急)."
    assert a.typed() == "提案：先写一个说明，第三条　要（加急）。"
    assert a.typed(2) == "先写一个说明，第三条　要（加急）。"  # punctuation trimmed only where cut
    start = a.text.index("3条")
    assert a.typed(start, start + 2) == "第三条"
    assert a.typed_without([(0, 2), (start, start + 2)]) == "先写一个说明 要（加急）。"
    assert a.typed(5, 5) == ""


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("十", 10),
        ("十二", 12),
        ("二十五", 25),
        ("两百", 200),
        ("一百零五", 105),
        ("二零二七", 2027),
        ("7", 7),
        ("张", None),
        ("", None),
    ],
)
def test_cn_to_int(text, value):
    assert cn_to_int(text) == value


def test_first_int():
    assert first_int("报名 12 带2人") == 12
    assert first_int("没有数字") is None


TODAY = date(2026, 11, 25)  # a Wednesday


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("今天", TODAY),
        ("明天的活动", date(2026, 11, 26)),
        ("后天", date(2026, 11, 27)),
        ("大后天", date(2026, 11, 28)),  # not 后天 with a stray 大
        ("下下周一", date(2026, 12, 7)),
        ("下下星期日", date(2026, 12, 13)),
        ("周末", date(2026, 11, 28)),
        ("周六的羽毛球赛", date(2026, 11, 28)),
        ("星期一", date(2026, 11, 30)),
        ("下周三", date(2026, 12, 2)),
        ("12月5日", date(2026, 12, 5)),
        ("１２月５号", date(2026, 12, 5)),
        ("1月3日", date(2027, 1, 3)),  # already past this year: next year
        ("2027-01-03", date(2027, 1, 3)),
        ("2月30日", None),
        ("随便", None),
    ],
)
def test_parse_date(text, expected):
    assert parse_date(text, TODAY) == expected


@pytest.mark.parametrize(
    ("text", "day", "rest"),
    [
        ("我想报名周六的羽毛球赛", date(2026, 11, 28), "我想报名 的羽毛球赛"),
        ("报名12月5号的羽毛球", date(2026, 12, 5), "报名 的羽毛球"),  # 5号 no longer reads as activity 5
        ("下周三有什么活动", date(2026, 12, 2), "有什么活动"),
        ("这周五的讲座", date(2026, 11, 27), "的讲座"),
        ("明天有啥活动", date(2026, 11, 26), "有啥活动"),
        ("报名大后天的讲座", date(2026, 11, 28), "报名 的讲座"),
        ("2月30日的活动", None, "2月30日的活动"),
        ("报名 3", None, "报名 3"),
    ],
)
def test_find_date_takes_the_date_words_out(text, day, rest):
    found = find_date(text, TODAY)
    assert (found.day, found.rest) == (day, rest)
    assert found.day is None or found.words and found.words not in found.rest
