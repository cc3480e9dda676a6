"""Roster import: xlsx / csv, validation with row numbers, all-or-nothing vs partial, dry run, identities, CLI."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select

from bot.message import ChatType, IncomingMessage
from models import Branch, Group, Member, PlatformIdentity
from models.roster import ImportReport, RowError, import_roster
from tests.conftest import add_member

HEADER = ["姓名", "工号", "分会", "小组", "手机", "性别", "岗位", "生日", "农历生日", "退休", "角色", "企业微信账号", "飞书账号"]  # fmt: skip
ROWS = [
    ["王秀兰", "10001", "内科分会", "心内科小组", "13912340001", "女", "主管护师", "1980-05-01", "", "否", "小组长", "wangxl", ""],
    ["李建国", "10002", "外科分会", "骨科小组", "139 1234 0002", "男", "主治医师", "1975/3/9", "", "", "分会主席、提案委员", "", "ou_li"],
    ["赵玉梅", "10003", "护理分会", "急诊科小组", "0571-87654321", "女", "护士", "1988年7月8日", "是", "", "", "", ""],
    ["陈德福", "10004", "离退休分会", "", "13912340004", "男", "退休", "1960-02-10", "腊月廿三", "是", "会员", "", ""],
]  # fmt: skip


def xlsx_bytes(rows, header=HEADER, title: str | None = None) -> bytes:
    wb = Workbook()
    ws = wb.active
    if title:
        ws.append([title])
    ws.append(header)
    for r in rows:
        ws.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def csv_bytes(rows, header=HEADER, encoding="utf-8-sig") -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode(encoding)


def run(bot, data, filename="roster.xlsx", **kw) -> ImportReport:
    with bot.db.transaction() as s:
        return import_roster(s, data, filename, **kw)


def member(bot, employee_no) -> Member | None:
    with bot.db.Session() as s:
        m = s.scalar(select(Member).where(Member.employee_no == employee_no))
        if m is not None:
            _ = (m.branch, m.group, m.roles, m.identities)
        return m


def count(bot, model) -> int:
    with bot.db.Session() as s:
        return s.scalar(select(func.count()).select_from(model))


def errors_at(report: ImportReport) -> set[tuple[int, str]]:
    return {(e.row, e.column) for e in report.errors}


# good files -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["xlsx", "csv"])
def test_good_file_creates_members_branches_groups_roles(bot, kind):
    data = xlsx_bytes(ROWS) if kind == "xlsx" else csv_bytes(ROWS)
    report = run(bot, data, f"名册.{kind}")
    assert report.ok, report.errors
    assert (report.rows, report.created, report.updated) == (4, 4, 0)
    assert "新增4人" in report.summary()
    assert count(bot, Branch) == 4 and count(bot, Group) == 3

    wang = member(bot, "10001")
    assert (wang.name, wang.branch.name, wang.group.name, wang.phone) == (
        "王秀兰",
        "内科分会",
        "心内科小组",
        "13912340001",
    )
    assert wang.birthday == date(1980, 5, 1) and not wang.birthday_is_lunar and not wang.retired
    assert wang.roles == {"member", "group_leader"} and wang.gender == "女" and wang.job_title == "主管护师"
    assert [(i.platform, i.platform_user_id) for i in wang.identities] == [("wecom", "wangxl")]

    li = member(bot, "10002")
    assert li.phone == "13912340002" and li.birthday == date(1975, 3, 9)
    assert li.roles == {"member", "branch_chair", "proposal_reviewer"}
    assert [(i.platform, i.platform_user_id) for i in li.identities] == [("feishu", "ou_li")]

    zhao = member(bot, "10003")  # 农历生日 = 是: 生日 is the lunar date 1988 七月初八
    assert zhao.phone == "0571-87654321"
    assert (zhao.birthday_is_lunar, zhao.lunar_birth_month, zhao.lunar_birth_day, zhao.lunar_birth_leap) == (
        True,
        7,
        8,
        False,
    )
    assert zhao.birthday == date(1988, 8, 19)

    chen = member(bot, "10004")  # lunar text in 农历生日: 生日 stays the solar date
    assert chen.retired and chen.birthday == date(1960, 2, 10) and chen.group is None
    assert (chen.lunar_birth_month, chen.lunar_birth_day) == (12, 23) and chen.roles == {"member"}


def test_excel_cells_dates_numbers_and_title_row(bot):
    rows = [
        [
            "孙丽娟",
            10011.0,
            "医技分会",
            "检验科小组",
            13912340011,
            "女",
            "检验师",
            datetime(1990, 1, 2),
            None,
            0,
        ],
        [
            "周海燕",
            10012,
            "医技分会",
            "检验科小组",
            "13912340012",
            "女",
            "药师",
            datetime(2020, 4, 8),
            "是",
            "N",
        ],
        ["吴桂芳", "10013", "医技分会", "", "", "女", "", "闰四月初八", "是", ""],
        ["郑红", "10014", "", "", "", "", "", 19850612, "", "Y"],
        ["冯秀英", "10015", "", "", "", "", "", "1983-3-4", "闰4-8", ""],
    ]
    report = run(bot, xlsx_bytes(rows, HEADER[:10], title="示例人民医院工会会员名册"))
    assert report.ok, report.errors
    sun = member(bot, "10011")
    assert sun.phone == "13912340011" and sun.birthday == date(1990, 1, 2) and not sun.retired
    zhou = member(bot, "10012")  # a date cell read as lunar 2020-04-08
    assert zhou.birthday == date(2020, 4, 30)
    assert (zhou.lunar_birth_month, zhou.lunar_birth_day, zhou.lunar_birth_leap) == (4, 8, False)
    wu = member(bot, "10013")
    assert wu.birthday is None and (wu.lunar_birth_month, wu.lunar_birth_day, wu.lunar_birth_leap) == (
        4,
        8,
        True,
    )
    assert member(bot, "10014").birthday == date(1985, 6, 12) and member(bot, "10014").retired
    feng = member(bot, "10015")
    assert feng.birthday == date(1983, 3, 4) and feng.birthday_is_lunar and feng.lunar_birth_leap


def test_gbk_csv(bot):
    report = run(bot, csv_bytes(ROWS, encoding="gbk"), "roster.csv")
    assert report.ok, report.errors
    assert member(bot, "10003").name == "赵玉梅" and member(bot, "10002").branch.name == "外科分会"


def test_utf8_csv_without_bom_and_header_variants(bot):
    header = ["*姓名", "工号(必填)", "分会", "手机号码", "出生日期"]
    report = run(
        bot,
        csv_bytes([["钱小红", "A-77", "内科分会", "13912349999", "1999.12.31"]], header, "utf-8"),
        "x.csv",
    )
    assert report.ok, report.errors
    m = member(bot, "A-77")
    assert m.phone == "13912349999" and m.birthday == date(1999, 12, 31)


# errors -----------------------------------------------------------------------------------------------------


def test_missing_required_column(bot):
    report = run(bot, csv_bytes([["王五", "内科分会"]], ["姓名", "分会"]), "r.csv")
    assert not report.ok and errors_at(report) == {(1, "工号")}
    assert "缺少必填列" in report.errors[0].message
    assert count(bot, Member) == 0


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [
        ("生日", "1980-13-01", "不存在"),
        ("生日", "明年春天", "无法识别"),
        ("生日", "2090-01-01", "不合理"),
        ("性别", "未知", "男"),
        ("退休", "可能", "是"),
        ("角色", "小组长、队长", "队长"),
        ("手机", "1391234", "11位"),
        ("农历生日", "十三月初一", "无法识别"),
        ("姓名", "", "不能为空"),
    ],
)
def test_bad_cell_reports_row_and_column(bot, column, value, words):
    rows = [list(r) for r in ROWS]
    rows[2][HEADER.index(column)] = value
    report = run(bot, xlsx_bytes(rows))
    assert errors_at(report) == {(4, column)}, report.errors
    assert words in report.errors[0].message
    assert str(report.errors[0]).startswith(f"第4行 {column}: ")
    assert count(bot, Member) == 0  # all-or-nothing


def test_lunar_flag_with_impossible_leap_month(bot):
    rows = [["甲乙", "1", "", "", "", "", "", "1980-闰4-8", "是"]]
    report = run(bot, xlsx_bytes(rows, HEADER[:9]))
    assert errors_at(report) == {(2, "生日")} and "没有闰4月" in report.errors[0].message


def test_duplicate_employee_no_in_file(bot):
    rows = [list(r) for r in ROWS] + [["王秀兰", "10001", "内科分会"] + [""] * 10]
    report = run(bot, xlsx_bytes(rows))
    assert errors_at(report) == {(6, "工号")} and "第2行" in report.errors[0].message


def test_account_linked_to_another_member(bot):
    other = add_member(bot, name="别人", employee_no="90001")
    with bot.db.transaction() as s:
        s.add(PlatformIdentity(platform="wecom", platform_user_id="wangxl", member_id=other.id))
    report = run(bot, xlsx_bytes(ROWS))
    assert errors_at(report) == {(2, "企业微信账号")}
    assert "别人" in report.errors[0].message and "90001" in report.errors[0].message


def test_same_account_twice_in_file(bot):
    rows = [list(r) for r in ROWS]
    rows[1][11] = "wangxl"
    report = run(bot, xlsx_bytes(rows))
    assert errors_at(report) == {(3, "企业微信账号")}


def test_unreadable_and_unsupported_files(bot):
    assert run(bot, b"PK\x03\x04garbage", "r.xlsx").errors[0].column == "文件"
    assert "xls" in run(bot, b"\xd0\xcf\x11\xe0rest", "r.xls").errors[0].message
    assert not run(bot, b"", "r.csv").ok


def test_group_needs_a_branch(bot):
    report = run(bot, csv_bytes([["王五", "555", "", "心内科小组"]], HEADER[:4]), "r.csv")
    assert errors_at(report) == {(2, "小组")}


# modes ------------------------------------------------------------------------------------------------------


def test_partial_writes_the_good_rows(bot):
    rows = [list(r) for r in ROWS]
    rows[1][5] = "X"  # row 3: bad gender
    report = run(bot, xlsx_bytes(rows), partial=True)
    assert errors_at(report) == {(3, "性别")}
    assert (report.created, report.skipped_rows) == (3, 1)
    assert "部分导入" in report.summary() and "跳过1行" in report.summary()
    assert member(bot, "10002") is None and member(bot, "10001") is not None


def test_all_or_nothing_summary(bot):
    rows = [list(r) for r in ROWS]
    rows[1][5] = "X"
    report = run(bot, xlsx_bytes(rows))
    assert "未导入任何数据" in report.summary() and count(bot, Member) == 0


def test_dry_run_writes_nothing(bot):
    add_member(bot, name="王秀兰", employee_no="10001", branch="内科分会", group="心内科小组")
    report = run(bot, xlsx_bytes(ROWS), dry_run=True)
    assert report.ok and (report.created, report.updated) == (3, 1)
    assert "试导入" in report.summary() and "未写入" in report.summary()
    assert count(bot, Member) == 1 and count(bot, Branch) == 1 and count(bot, PlatformIdentity) == 0
    assert report.branches_created == ["外科分会", "护理分会", "离退休分会"]


def test_reimport_is_idempotent_and_updates_changes(bot):
    assert run(bot, xlsx_bytes(ROWS)).created == 4
    again = run(bot, xlsx_bytes(ROWS))
    assert again.ok and (again.created, again.updated, again.unchanged) == (0, 0, 4)
    assert count(bot, Member) == 4 and count(bot, PlatformIdentity) == 2 and count(bot, Group) == 3

    rows = [list(r) for r in ROWS]
    rows[0][3] = "呼吸科小组"  # moved group
    rows[0][11] = "wangxl2"  # new WeCom account replaces the old
    rows[1][10] = "会员"  # roles taken away
    rows[3] = ["陈德福", "10004"] + [""] * 11  # blank cells change nothing
    report = run(bot, xlsx_bytes(rows))
    assert (report.created, report.updated, report.unchanged) == (0, 2, 2)
    wang = member(bot, "10001")
    assert wang.group.name == "呼吸科小组" and [i.platform_user_id for i in wang.identities] == ["wangxl2"]
    assert member(bot, "10002").roles == {"member"}
    assert member(bot, "10004").retired and member(bot, "10004").branch.name == "离退休分会"


def test_accounts_can_swap_between_members_in_one_file(bot):
    run(bot, xlsx_bytes(ROWS))
    rows = [list(r) for r in ROWS]
    rows[0][11], rows[1][11] = "liwx", "wangxl"
    report = run(bot, xlsx_bytes(rows))
    assert report.ok, report.errors
    assert [i.platform_user_id for i in member(bot, "10002").identities if i.platform == "wecom"] == [
        "wangxl"
    ]


def test_lunar_flag_no_turns_lunar_off(bot):
    run(bot, xlsx_bytes(ROWS))
    rows = [list(r) for r in ROWS]
    rows[3][8] = "否"
    run(bot, xlsx_bytes(rows))
    chen = member(bot, "10004")
    assert not chen.birthday_is_lunar and chen.lunar_birth_month is None


# the bot recognises imported accounts ------------------------------------------------------------------------


def test_imported_wecom_account_is_recognised(bot):
    assert run(bot, xlsx_bytes(ROWS)).ok
    result = bot.handle(
        IncomingMessage(
            platform="wecom",
            message_id="m-1",
            chat_type=ChatType.PRIVATE,
            chat_id="wangxl",
            user_id="wangxl",
            text="我的信息",
        )
    )
    text = "\n".join(r.text for r in result.replies)
    assert "工号：10001" in text and "王秀兰" in text and "小组长" in text


# CLI --------------------------------------------------------------------------------------------------------


def test_cli_import(app, bot, tmp_path):
    good = tmp_path / "good.xlsx"
    good.write_bytes(xlsx_bytes(ROWS))
    runner = app.test_cli_runner()

    r = runner.invoke(args=["members", "import", str(good), "--dry-run"])
    assert r.exit_code == 0 and "试导入" in r.output and count(bot, Member) == 0

    r = runner.invoke(args=["members", "import", str(good)])
    assert r.exit_code == 0, r.output
    assert "新增4人" in r.output and count(bot, Member) == 4

    bad_rows = [list(x) for x in ROWS]
    bad_rows[0][1], bad_rows[0][11] = "20001", ""
    bad_rows[2][7] = "1980-02-30"
    bad = tmp_path / "bad.csv"
    bad.write_bytes(csv_bytes(bad_rows, encoding="gbk"))
    r = runner.invoke(args=["members", "import", str(bad)])
    assert r.exit_code != 0 and "第4行 生日:" in r.output and member(bot, "20001") is None

    r = runner.invoke(args=["members", "import", str(bad), "--partial"])
    assert r.exit_code != 0 and "部分导入" in r.output and member(bot, "20001") is not None


def test_sample_files_import_cleanly(bot):
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "samples"
    for name in ("roster_sample.xlsx", "roster_sample.csv"):
        report = run(bot, (root / name).read_bytes(), name, dry_run=True)
        assert report.ok, (name, [str(e) for e in report.errors])
        assert report.rows >= 20
    for name in ("roster_sample.csv", "roster_sample.xlsx"):  # every column the README lists is in both files
        assert run(bot, (root / name).read_bytes(), name).ok
        delegate, mother, none, blank = (member(bot, no) for no in ("20004", "20005", "20015", "20002"))
        assert delegate.is_delegate and delegate.has_children and not blank.is_delegate
        assert mother.has_children is True and none.has_children is False and blank.has_children is None


def test_row_error_text():
    assert str(RowError(3, "生日", "不对")) == "第3行 生日: 不对"
    assert str(RowError(0, "文件", "坏了")) == "文件: 坏了"


def test_header_below_blank_rows_and_rename_warning(bot):
    wb = Workbook()
    ws = wb.active
    ws["B3"], ws["C3"], ws["D3"] = "工号", "姓名", "备注"
    ws["B4"], ws["C4"], ws["D4"] = "10001", "王秀兰", "随便写"
    ws["B6"], ws["C6"] = 10002, "李建国"
    buf = io.BytesIO()
    wb.save(buf)
    report = run(bot, buf.getvalue())
    assert report.ok and report.created == 2 and not report.warnings

    rows = [["王秀岚", "10001"]]
    report = run(bot, csv_bytes(rows, ["姓名", "工号"]), "r.csv")
    assert report.ok and report.updated == 1
    assert [(w.row, w.column) for w in report.warnings] == [(2, "姓名")] and "王秀兰" in report.warnings[
        0
    ].message
    assert member(bot, "10001").name == "王秀岚"


def test_inactive_member_is_reactivated(bot):
    add_member(bot, name="王秀兰", employee_no="10001", active=False)
    report = run(bot, csv_bytes([["王秀兰", "10001"]], ["姓名", "工号"]), "r.csv")
    assert report.updated == 1 and member(bot, "10001").active


def test_tab_separated_utf16_text(bot):
    text = "姓名\t工号\t手机\n郑小红\t777\t+86 13912347777\n"
    report = run(bot, text.encode("utf-16"), "roster.csv")
    assert report.ok, report.errors
    assert member(bot, "777").phone == "13912347777"


def test_delegate_column_and_missing_header_blames_header_line(bot):
    report = run(bot, csv_bytes([["王五", "55", "是"]], ["姓名", "工号", "职工代表"]), "r.csv")
    assert report.ok and member(bot, "55").is_delegate

    data = xlsx_bytes([["王五", "内科分会"]], ["姓名", "分会"], title="示例人民医院工会会员名册")
    report = run(bot, data)
    assert errors_at(report) == {(2, "工号")}


def test_preview_with_errors_counts_the_good_rows(bot):
    rows = [list(r) for r in ROWS]
    rows[1][5] = "X"
    report = run(bot, xlsx_bytes(rows), dry_run=True, partial=True)
    assert (report.created, report.skipped_rows, len(report.errors)) == (3, 1, 1)
    assert "涉及1行" in report.summary() and "新增3人" in report.summary() and count(bot, Member) == 0
