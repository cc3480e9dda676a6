"""Roster import (会员名册导入): an .xlsx or .csv with Chinese headers becomes members, branches, groups,
roles and platform identities.

Columns (header names; a few common variants are accepted, see `HEADER_ALIASES`):
    姓名*  工号*  分会  小组  手机  性别  岗位  生日  农历生日  退休  角色  企业微信账号  飞书账号
(* required), and optionally 职工代表 (是/否: a delegate to the workers' congress) and 有子女 (是/否: the 六一
greeting goes to members marked 是; left blank the member's answer stays unknown). Unknown columns are
ignored. The header is the first row that holds both 姓名 and 工号 among the first five rows (a title line
above it is fine); row numbers in errors are the spreadsheet's own (header = 1 when it is the first line).

Rules:
- Members are matched by 工号 (employee_no): new ones are created, known ones updated (a changed 姓名 is
  applied but also reported in `warnings`, since it is more often a mistyped 工号 than a renamed person).
  A member listed in the roster is active: an inactive member who appears again is reactivated.
- A blank cell leaves the stored value alone (a roster exported by HR without roles must not wipe roles);
  a column missing from the file is not touched either. To take all roles away write 会员 in 角色.
- 分会 / 小组 are created when new; a 小组 always belongs to the row's 分会 (or the member's current branch).
- 生日: 1980-05-01, 1980/5/1, 1980.5.1, 1980年5月1日, 19800501, or a date cell in Excel.
- 农历生日 — lunar birthdays, two ways to write them:
    * a yes/no flag (是/否, Y/N, 1/0): 是 means the date in 生日 is a LUNAR date: 1980-04-08 reads as
      lunar year 1980, 4th month, 8th day. A leap month is written 1980-闰4-8, 1980年闰四月初八 or 闰四月初八.
      The solar birthday is computed from it (when the year is given), so `birthday` stays a real date.
    * the lunar month/day itself: 四月初八, 闰四月初八, 4月8日, 闰4月8日, 4-8, 闰4-8 (optionally with a year:
      1980年四月初八). Then 生日 (if filled) is the solar birth date; with neither, the solar date is computed
      from the lunar year when one is given.
  Either way the member gets birthday_is_lunar=True, lunar_birth_month/day and lunar_birth_leap.
  否 / N / 0 turns a lunar birthday back into a solar one.
- 退休: 是/否, Y/N, 1/0, true/false. 性别: 男/女. 手机: digits kept; a mobile number must have 11 digits
  (a +86 prefix is dropped); anything else that is not a mobile (a landline like 0571-87654321) is kept as is.
- 角色: labels (分会主席、小组长 …) or codes (branch_chair …) separated by 、 , ， / ／ ; or spaces.
- 企业微信账号 / 飞书账号: the WeCom userid / Feishu open_id, union_id or user_id; linked to the member so the bot recognises them
  without the binding dialog. An account linked to another member is an error; a member's previous account
  on the same platform is replaced by the roster's.

All-or-nothing: any row error means nothing is written, unless `partial=True` (the good rows are written).
`dry_run=True` validates and counts what would be created / updated and writes nothing.
The caller owns the transaction (`with bot.db.transaction() as s: import_roster(s, ...)`).

Counting: `created` = new members, `updated` = members with at least one real change, `unchanged` = known
members the row did not change (so re-importing the same file gives created=0, updated=0).
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.member import ROLE_LABELS, ROLES, Branch, Group, Member, PlatformIdentity

# canonical header -> accepted spellings (compared after NFKC, without spaces, '*' and '(必填)' marks)
HEADER_ALIASES: dict[str, tuple[str, ...]] = {
    "姓名": ("姓名", "名字", "会员姓名", "职工姓名"),
    "工号": ("工号", "职工号", "员工号", "员工编号", "工作证号"),
    "分会": ("分会", "分工会", "所属分会"),
    "小组": ("小组", "工会小组", "所属小组"),
    "手机": ("手机", "手机号", "手机号码", "电话", "联系电话"),
    "性别": ("性别",),
    "岗位": ("岗位", "职务", "职称", "岗位职称"),
    "生日": ("生日", "出生日期", "出生年月日"),
    "农历生日": ("农历生日", "农历", "是否农历", "农历生日(是/否)"),
    "退休": ("退休", "是否退休", "离退休"),
    "角色": ("角色", "工会职务", "工会角色"),
    "职工代表": ("职工代表", "是否职工代表", "职代会代表"),
    "有子女": ("有子女", "是否有子女", "有无子女"),
    "企业微信账号": ("企业微信账号", "企业微信", "企业微信id", "企业微信userid", "企微账号"),
    "飞书账号": ("飞书账号", "飞书", "飞书id", "飞书openid", "飞书open_id"),
}
REQUIRED = ("姓名", "工号")
PLATFORM_COLUMNS = {"企业微信账号": "wecom", "飞书账号": "feishu"}
PLATFORM_NAMES = {"wecom": "企业微信", "feishu": "飞书"}
MAX_ROWS = 20000

_YES = {"是", "y", "yes", "1", "true", "t", "√", "✓", "退休", "已退休", "农历"}
_NO = {"否", "n", "no", "0", "false", "f", "×", "在职", "公历", "阳历", "不是"}
_ROLE_BY_LABEL = {label: code for code, label in ROLE_LABELS.items() if code in ROLES}
_ROLE_SYNONYMS = {"主席": "chair", "工会干事": "clerk", "小组长": "group_leader", "组长": "group_leader"}
_ROLE_SPLIT = re.compile(r"[、,，/／;；\s]+")
_LUNAR_MONTHS = {
    "正": 1, "一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10,
    "十一": 11, "冬": 11, "十二": 12, "腊": 12,
}  # fmt: skip
_CN_DIGITS = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}


@dataclass(frozen=True)
class RowError:
    """One problem: `row` is the spreadsheet row (header = 1; 0 = the file as a whole), `column` its header."""

    row: int
    column: str
    message: str

    def __str__(self) -> str:
        if self.row <= 0:
            return f"文件: {self.message}"
        where = f"第{self.row}行"
        return f"{where} {self.column}: {self.message}" if self.column else f"{where}: {self.message}"


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)
    warnings: list[RowError] = field(
        default_factory=list
    )  # imported, but worth a look (e.g. a renamed member)
    dry_run: bool = False
    partial: bool = False
    written: bool = False  # something was (or, in a dry run, would be) written
    skipped_rows: int = 0  # rows left out because of their errors (partial imports)
    branches_created: list[str] = field(default_factory=list)
    groups_created: list[str] = field(default_factory=list)
    accounts_linked: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        counts = f"新增{self.created}人，更新{self.updated}人，无变化{self.unchanged}人"
        extra = ""
        if self.branches_created or self.groups_created:
            extra = f"，新建分会{len(self.branches_created)}个、小组{len(self.groups_created)}个"
        if self.accounts_linked:
            extra += f"，关联账号{self.accounts_linked}个"
        if self.dry_run:
            if self.errors and self.partial:
                return (
                    f"试导入：共{self.rows}行，发现{len(self.errors)}处错误（涉及{self.skipped_rows}行）；"
                    f"其余行将{counts}{extra}；未写入任何数据。"
                )
            if self.errors:
                return (
                    f"试导入：共{self.rows}行，发现{len(self.errors)}处错误，请修改后再导入；未写入任何数据。"
                )
            return f"试导入：共{self.rows}行，将{counts}{extra}；未写入任何数据。"
        if self.errors and not self.partial:
            return f"共{self.rows}行，发现{len(self.errors)}处错误，未导入任何数据，请修改后重新导入。"
        if self.errors:
            return (
                f"部分导入：共{self.rows}行，跳过{self.skipped_rows}行有错误的行"
                f"（{len(self.errors)}处错误），{counts}{extra}。"
            )
        return f"导入完成：共{self.rows}行，{counts}{extra}。"


# --------------------------------------------------------------------------------------------------------
# reading the file


def _read_table(data: bytes, filename: str) -> list[tuple[int, list[Any]]]:
    """Rows as (spreadsheet row number, cell values). Raises ValueError with a Chinese message."""
    name = (filename or "").lower()
    if name.endswith((".xlsx", ".xlsm")) or (not name.endswith(".csv") and data[:2] == b"PK"):
        return _read_xlsx(data)
    if name.endswith(".xls") or data[:4] == b"\xd0\xcf\x11\xe0":
        raise ValueError("不支持旧版 .xls 文件，请在 Excel 中“另存为” .xlsx 或 .csv 后再导入")
    if name.endswith((".csv", ".txt")) or not name:
        return _read_csv(data)
    raise ValueError("只支持 .xlsx 或 .csv 文件")


def _read_xlsx(data: bytes) -> list[tuple[int, list[Any]]]:
    from openpyxl import load_workbook

    unreadable = "无法读取这个 Excel 文件，请确认是 .xlsx 格式且没有加密"
    try:
        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # zip, XML and openpyxl errors alike: the file is not a usable workbook
        raise ValueError(unreadable) from exc
    try:
        sheet = wb.active if wb.active is not None else wb.worksheets[0]
        # the first sheet whose top rows hold the header wins (a cover sheet before the roster is fine)
        for ws in [sheet, *[w for w in wb.worksheets if w is not sheet]]:
            ws.reset_dimensions()  # some writers store a wrong sheet size (A1:A1); read what is really there
            rows = [(i, list(r)) for i, r in enumerate(ws.iter_rows(values_only=True), start=1)]
            if _find_header(rows) is not None:
                return rows
        return [(i, list(r)) for i, r in enumerate(sheet.iter_rows(values_only=True), start=1)]
    except Exception as exc:
        raise ValueError(unreadable) from exc
    finally:
        wb.close()


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030")  # superset of GBK / GB2312: what Excel in China saves
    except UnicodeDecodeError as exc:
        raise ValueError("无法识别文件编码，请用 Excel“另存为 CSV UTF-8”后再导入") from exc


def _read_csv(data: bytes) -> list[tuple[int, list[Any]]]:
    text = _decode(data)
    first = text.split("\n", 1)[0]
    delimiter = "\t" if first.count("\t") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    return [(i, list(r)) for i, r in enumerate(reader, start=1)]


def _canon_header(value: Any) -> str | None:
    text = _clean(value)
    if not text:
        return None
    key = re.sub(r"[\s*＊]|[（(]必填[)）]", "", text).lower()
    for canon, aliases in HEADER_ALIASES.items():
        if key in {a.lower() for a in aliases}:
            return canon
    return None


def _find_header(rows: list[tuple[int, list[Any]]]) -> int | None:
    """Index into rows of the header line: the first of the top five holding both 姓名 and 工号."""
    for idx, (_n, cells) in enumerate(rows[:5]):
        names = {_canon_header(c) for c in cells}
        if set(REQUIRED) <= names:
            return idx
    return None


# --------------------------------------------------------------------------------------------------------
# cell parsing


def _clean(value: Any) -> str:
    """A cell as trimmed text; Excel numbers that are whole become integers (10001.0 -> '10001')."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, datetime):
        value = value.date()
    text = unicodedata.normalize("NFKC", str(value)).replace("\u200b", "").replace("\ufeff", "")
    return text.strip()


class CellError(ValueError):
    pass


def _yes_no(text: str) -> bool:
    t = text.lower()
    if t in _YES:
        return True
    if t in _NO:
        return False
    raise CellError(f"“{text}”无法识别，请填写“是”或“否”")


def _parse_gender(text: str) -> str:
    t = text.lower()
    if t in {"男", "男性", "m", "male"}:
        return "男"
    if t in {"女", "女性", "f", "female"}:
        return "女"
    raise CellError(f"“{text}”无法识别，请填写“男”或“女”")


def _parse_phone(text: str) -> str:
    if re.fullmatch(r"\d(\.\d+)?e\+?\d+", text.lower()):
        raise CellError(f"“{text}”被 Excel 显示成了科学计数法，请把这一列设为“文本”后重新填写")
    digits = re.sub(r"\D", "", text)
    if text.startswith("+86") or (len(digits) == 13 and digits.startswith("861")):
        digits = digits[2:]
    if digits.startswith("1"):
        if len(digits) != 11:
            raise CellError(f"手机号“{text}”应为11位数字")
        return digits
    if len(digits) < 7:
        raise CellError(f"电话“{text}”位数不对，手机号应为11位数字")
    return text  # a landline such as 0571-87654321 or 87654321 is kept as written


def _parse_roles(text: str) -> set[str]:
    roles: set[str] = set()
    for part in _ROLE_SPLIT.split(text):
        if not part:
            continue
        code = _ROLE_BY_LABEL.get(part) or _ROLE_SYNONYMS.get(part) or (part if part in ROLES else None)
        if code is None and part.lower() in ROLES:
            code = part.lower()
        if code is None:
            labels = "、".join(ROLE_LABELS[r] for r in ROLES)
            raise CellError(f"未知角色“{part}”，可填写：{labels}")
        roles.add(code)
    return roles - {"member"}


_SOLAR = [
    re.compile(
        r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*[日号]?(?:\s+\d{1,2}:\d{2}(?::\d{2})?)?$"
    ),
    re.compile(r"^(\d{4})(\d{2})(\d{2})$"),
]


def _parse_solar(value: Any, text: str) -> date:
    if isinstance(value, datetime):
        return _check_birth(value.date(), text)
    if isinstance(value, date):
        return _check_birth(value, text)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 1 <= value < 80000:
        from openpyxl.utils.datetime import from_excel  # an Excel serial number in a cell not shown as a date

        return _check_birth(from_excel(value).date(), text)
    for pattern in _SOLAR:
        m = pattern.match(text)
        if m:
            try:
                d = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
            except ValueError:
                raise CellError(f"日期“{text}”不存在，请检查月份和日期") from None
            return _check_birth(d, text)
    raise CellError(f"日期“{text}”无法识别，请写成 1980-05-01 或 1980年5月1日")


def _check_birth(d: date, text: str) -> date:
    if not (d.year >= 1900 and d <= date.today()):
        raise CellError(f"出生日期“{text}”不合理，请检查年份")
    return d


def _cn_day(text: str) -> int | None:
    """初八 -> 8, 十五 -> 15, 廿三 -> 23, 三十 -> 30, 8 -> 8."""
    if text.isdigit():
        return int(text)
    text = text.removesuffix("日").removesuffix("号")
    if text.startswith("初"):
        rest = text[1:]
        return 10 if rest == "十" else _CN_DIGITS.get(rest)
    if text in ("十", "卅", "三十"):
        return {"十": 10, "卅": 30, "三十": 30}[text]
    if text == "二十" or text == "廿":
        return 20
    for prefix, base in (("十", 10), ("廿", 20), ("二十", 20), ("卅", 30)):
        if text.startswith(prefix) and text[len(prefix) :] in _CN_DIGITS:
            return base + _CN_DIGITS[text[len(prefix) :]]
    return None


_LUNAR_CN = re.compile(
    r"^(?:(\d{4})\s*年)?\s*(闰)?\s*(正|一|二|三|四|五|六|七|八|九|十一|十二|十|冬|腊)月\s*(\S+?)\s*$"
)
_LUNAR_NUM = re.compile(r"^(?:(\d{4})\s*[-/.年]\s*)?(闰)?\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*[日号]?$")


@dataclass
class Lunar:
    year: int | None
    month: int
    day: int
    leap: bool


def _parse_lunar(text: str) -> Lunar | None:
    """四月初八, 闰四月初八, 1980年四月初八, 4月8日, 闰4-8, 1980-闰4-8 ... ; None if not lunar-looking."""
    text = text.removeprefix("农历").strip()
    m = _LUNAR_CN.match(text)
    if m:
        day = _cn_day(m.group(4))
        if day is None:
            raise CellError(f"农历日期“{text}”的日子无法识别，请写成 四月初八 或 4-8")
        lunar = Lunar(
            int(m.group(1)) if m.group(1) else None, _LUNAR_MONTHS[m.group(3)], day, bool(m.group(2))
        )
    else:
        m = _LUNAR_NUM.match(text)
        if not m:
            return None
        lunar = Lunar(
            int(m.group(1)) if m.group(1) else None, int(m.group(3)), int(m.group(4)), bool(m.group(2))
        )
    _check_lunar(lunar, text)
    return lunar


def _check_lunar(lunar: Lunar, text: str) -> None:
    if not (1 <= lunar.month <= 12 and 1 <= lunar.day <= 30):
        raise CellError(f"农历日期“{text}”不存在（月份1–12，日子初一到三十）")
    if lunar.year is not None:
        if not (1900 <= lunar.year <= date.today().year):
            raise CellError(f"农历日期“{text}”的年份不合理")
        try:
            _lunar_to_solar(lunar)
        except ValueError:
            what = f"闰{lunar.month}月" if lunar.leap else f"{lunar.month}月{lunar.day}日"
            raise CellError(f"农历{lunar.year}年没有{what}，请检查") from None


def _lunar_to_solar(lunar: Lunar) -> date:
    from tyme4py.lunar import LunarDay

    assert lunar.year is not None
    sd = LunarDay.from_ymd(lunar.year, -lunar.month if lunar.leap else lunar.month, lunar.day).get_solar_day()
    return date(sd.get_year(), sd.get_month(), sd.get_day())


def solar_to_lunar(d: date) -> tuple[int, int, bool]:
    """(lunar month, lunar day, leap) of a solar date."""
    from tyme4py.solar import SolarDay

    ld = SolarDay.from_ymd(d.year, d.month, d.day).get_lunar_day()
    month = ld.get_lunar_month()
    return abs(month.get_month()), ld.get_day(), month.is_leap()


def _lunar_from_date_cell(value: Any, text: str) -> Lunar:
    """生日 read as a lunar date (农历生日 = 是): a date cell or 1980-04-08 means lunar 1980/4/8."""
    if isinstance(value, (date, datetime)):
        lunar = Lunar(value.year, value.month, value.day, False)
        _check_lunar(lunar, text)
        return lunar
    m = re.match(r"^(\d{4})(\d{2})(\d{2})$", text)
    if m:
        lunar = Lunar(int(m.group(1)), int(m.group(2)), int(m.group(3)), False)
        _check_lunar(lunar, text)
        return lunar
    lunar = _parse_lunar(text)
    if lunar is None:
        raise CellError(f"农历生日“{text}”无法识别，请写成 1980-04-08、1980年闰四月初八 或 四月初八")
    return lunar


# --------------------------------------------------------------------------------------------------------
# rows


@dataclass
class _Row:
    number: int
    values: dict[str, Any]  # canonical header -> parsed value (only non-blank cells)
    errors: list[RowError]

    @property
    def employee_no(self) -> str:
        return self.values.get("工号", "")


def _parse_row(number: int, cells: dict[str, Any]) -> _Row:
    row = _Row(number, {}, [])
    texts = {col: _clean(v) for col, v in cells.items()}

    def fail(col: str, message: str) -> None:
        row.errors.append(RowError(number, col, message))

    for col in REQUIRED:
        if not texts.get(col):
            fail(col, f"{col}不能为空")
    name = texts.get("姓名", "")
    if name:
        if len(name) > 50:
            fail("姓名", "姓名太长（最多50个字）")
        row.values["姓名"] = re.sub(r"\s+", "", name) if re.search(r"[\u4e00-\u9fa5]", name) else name
    emp = texts.get("工号", "")
    if emp:
        if len(emp) > 32 or re.search(r"\s", emp):
            fail("工号", f"工号“{emp}”格式不对（不能有空格，最多32位）")
        row.values["工号"] = emp
    for col in ("分会", "小组", "岗位"):
        if texts.get(col):
            if len(texts[col]) > (100 if col != "岗位" else 50):
                fail(col, f"{col}名称太长")
            row.values[col] = texts[col]
    parsers = {
        "性别": _parse_gender,
        "手机": _parse_phone,
        "退休": _yes_no,
        "职工代表": _yes_no,
        "有子女": lambda t: _yes_no({"有": "是", "无": "否", "没有": "否"}.get(t, t)),
        "角色": _parse_roles,
    }
    for col, parse in parsers.items():
        if texts.get(col):
            try:
                row.values[col] = parse(texts[col])
            except CellError as exc:
                fail(col, str(exc))
    for col in PLATFORM_COLUMNS:
        if texts.get(col):
            if len(texts[col]) > 128 or re.search(r"\s", texts[col]):
                fail(col, f"账号“{texts[col]}”格式不对（不能有空格）")
            else:
                row.values[col] = texts[col]
    _parse_birthday(row, cells, texts, fail)
    return row


def _parse_birthday(row: _Row, cells: dict[str, Any], texts: dict[str, str], fail) -> None:
    """Sets row.values['生日'] (solar date or None) and row.values['农历'] (Lunar, False for 'not lunar')."""
    raw, text = cells.get("生日"), texts.get("生日", "")
    flag_text = texts.get("农历生日", "")
    flag: bool | None = None
    lunar: Lunar | None = None
    if flag_text:
        try:
            flag = _yes_no(flag_text)
        except CellError:
            try:
                lunar = _parse_lunar(flag_text)
            except CellError as exc:
                fail("农历生日", str(exc))
                return
            if lunar is None:
                fail("农历生日", f"“{flag_text}”无法识别，请填写“是/否”或农历日期，如 四月初八、闰4-8")
                return
    if flag is True:
        if not text:
            fail("生日", "农历生日填了“是”，请在生日列填写农历日期，如 1980-04-08")
            return
        try:
            lunar = _lunar_from_date_cell(raw, text)
        except CellError as exc:
            fail("生日", str(exc))
            return
        row.values["农历"] = lunar
        if lunar.year is not None:
            row.values["生日"] = _lunar_to_solar(lunar)
        return
    if text:
        try:
            row.values["生日"] = _parse_solar(raw, text)
        except CellError as exc:
            fail("生日", str(exc))
            return
    if lunar is not None:
        row.values["农历"] = lunar
        if "生日" not in row.values and lunar.year is not None:
            row.values["生日"] = _lunar_to_solar(lunar)
    elif flag is False:
        row.values["农历"] = False


# --------------------------------------------------------------------------------------------------------
# the import


def import_roster(
    session: Session, data: bytes, filename: str, *, dry_run: bool = False, partial: bool = False
) -> ImportReport:
    """Validate and (unless dry_run) write the roster; see the module docstring for the rules."""
    report = ImportReport(dry_run=dry_run, partial=partial)
    try:
        table = _read_table(data, filename)
    except ValueError as exc:
        report.errors.append(RowError(0, "文件", str(exc)))
        return report
    header_idx = _find_header(table)
    if header_idx is None:
        # blame the likeliest header line: the top row naming the most known columns (else the first line)
        top = [(n, cells) for n, cells in table[:5] if any(_clean(c) for c in cells)] or [(1, [])]
        first, cells = max(top, key=lambda t: (len({_canon_header(c) for c in t[1]} - {None}), -t[0]))
        cols = {_canon_header(c) for c in cells}
        missing = [c for c in REQUIRED if c not in cols] or list(REQUIRED)
        for col in missing:
            report.errors.append(RowError(first, col, f"缺少必填列“{col}”，请检查表头（第一行）"))
        return report
    header_no, header_cells = table[header_idx]
    columns: dict[int, str] = {}
    for i, cell in enumerate(header_cells):
        canon = _canon_header(cell)
        if canon is None:
            continue
        if canon in columns.values():
            report.errors.append(RowError(header_no, canon, f"表头中“{canon}”列出现了两次"))
            continue
        columns[i] = canon
    if report.errors:
        return report

    rows: list[_Row] = []
    for number, cells in table[header_idx + 1 :]:
        values = {columns[i]: v for i, v in enumerate(cells) if i in columns}
        if not any(_clean(v) for v in values.values()):
            continue
        rows.append(_parse_row(number, values))
        if len(rows) > MAX_ROWS:
            report.errors.append(RowError(number, "", f"一次最多导入{MAX_ROWS}行，请分批导入"))
            return report
    report.rows = len(rows)
    _check_across_rows(session, rows)

    bad = {r.number for r in rows if r.errors}
    for r in rows:
        report.errors.extend(r.errors)
    if bad and not partial:
        return report
    report.skipped_rows = len(bad)
    _apply(session, [r for r in rows if not r.errors], report, dry_run=dry_run)
    return report


def _check_across_rows(session: Session, rows: list[_Row]) -> None:
    """Errors that need the whole file or the database: duplicate 工号 / accounts, accounts owned elsewhere."""
    seen_emp: dict[str, int] = {}
    seen_acct: dict[tuple[str, str], _Row] = {}
    for r in rows:
        emp = r.employee_no
        if emp:
            if emp in seen_emp:
                r.errors.append(RowError(r.number, "工号", f"工号“{emp}”与第{seen_emp[emp]}行重复"))
            else:
                seen_emp[emp] = r.number
        for col, platform in PLATFORM_COLUMNS.items():
            uid = r.values.get(col)
            if uid is None:
                continue
            first = seen_acct.get((platform, uid))
            if first is not None and first.employee_no != emp:
                r.errors.append(RowError(r.number, col, f"账号“{uid}”与第{first.number}行重复"))
            else:
                seen_acct.setdefault((platform, uid), r)
    # a group needs a branch: the row's, or the member's current one
    orphans = [r for r in rows if "小组" in r.values and "分会" not in r.values and r.employee_no]
    if orphans:
        has_branch = set(
            session.scalars(
                select(Member.employee_no).where(
                    Member.employee_no.in_([r.employee_no for r in orphans]), Member.branch_id.is_not(None)
                )
            )
        )
        for r in orphans:
            if r.employee_no not in has_branch:
                r.errors.append(RowError(r.number, "小组", "填写小组时请同时填写所属分会"))
    # accounts already linked in the database to someone else
    wanted = dict(seen_acct)
    if not wanted:
        return
    new_account_of = {  # rows that will be written (an erroneous row frees nothing)
        (r.employee_no, platform): r.values.get(col)
        for r in rows
        if not r.errors
        for col, platform in PLATFORM_COLUMNS.items()
    }
    for platform in {p for p, _ in wanted}:
        uids = [uid for p, uid in wanted if p == platform]
        for chunk_start in range(0, len(uids), 500):
            chunk = uids[chunk_start : chunk_start + 500]
            found = session.execute(
                select(PlatformIdentity.platform_user_id, Member.employee_no, Member.name)
                .join(Member, PlatformIdentity.member_id == Member.id)
                .where(PlatformIdentity.platform == platform, PlatformIdentity.platform_user_id.in_(chunk))
            ).all()
            for uid, owner_no, owner_name in found:
                r = wanted[(platform, uid)]
                if owner_no == r.employee_no:
                    continue
                # the owner moves to another account in this same file: the account is free by then
                moved = new_account_of.get((owner_no, platform))
                if moved and moved != uid:
                    continue
                col = next(c for c, p in PLATFORM_COLUMNS.items() if p == platform)
                r.errors.append(
                    RowError(
                        r.number,
                        col,
                        f"{PLATFORM_NAMES[platform]}账号“{uid}”已关联会员{owner_name}（工号{owner_no}），"
                        "请先核对或在后台解除关联",
                    )
                )


_FIELDS = {
    "姓名": "name",
    "手机": "phone",
    "性别": "gender",
    "岗位": "job_title",
    "退休": "retired",
    "职工代表": "is_delegate",
    "有子女": "has_children",
}


def _lunar_fields(lunar: Lunar | bool | None) -> dict[str, Any]:
    if isinstance(lunar, Lunar):
        return {
            "birthday_is_lunar": True,
            "lunar_birth_month": lunar.month,
            "lunar_birth_day": lunar.day,
            "lunar_birth_leap": lunar.leap,
        }
    if lunar is False:
        return {
            "birthday_is_lunar": False,
            "lunar_birth_month": None,
            "lunar_birth_day": None,
            "lunar_birth_leap": False,
        }
    return {}


def _apply(session: Session, rows: list[_Row], report: ImportReport, *, dry_run: bool) -> None:
    existing = _existing_members(session, rows)
    branches = {b.name: b for b in session.scalars(select(Branch))}
    groups = {(g.branch.name, g.name): g for g in session.scalars(select(Group))}
    new_branches: set[str] = set()
    new_groups: set[tuple[str, str]] = set()
    links: list[tuple[Member, str, str]] = []

    for r in rows:
        v = r.values
        member = existing.get(r.employee_no)

        def now(attr: str, m: Member | None = member) -> Any:
            return getattr(m, attr) if m is not None else None

        changes: dict[str, Any] = {}
        for col, attr in _FIELDS.items():
            if col in v and now(attr) != v[col]:
                changes[attr] = v[col]
        if member is not None and "name" in changes:
            report.warnings.append(
                RowError(
                    r.number,
                    "姓名",
                    f"工号{r.employee_no}原姓名为“{member.name}”，将改为“{v['姓名']}”，请确认工号无误",
                )
            )
        if "生日" in v and now("birthday") != v["生日"]:
            changes["birthday"] = v["生日"]
        changes.update({k: x for k, x in _lunar_fields(v.get("农历")).items() if now(k) != x})
        if member is not None and not member.active:
            changes["active"] = True

        # branch and group, compared by name so that a dry run needs no new rows
        cur_branch = now("branch").name if now("branch") is not None else None
        cur_group = now("group").name if now("group") is not None else None
        want_branch = v.get("分会", cur_branch)
        want_group = v.get("小组", cur_group if want_branch == cur_branch else None)
        move = (want_branch, want_group) != (cur_branch, cur_group)
        if want_branch and want_branch not in branches:
            new_branches.add(want_branch)
        if want_branch and want_group and (want_branch, want_group) not in groups:
            new_groups.add((want_branch, want_group))

        roles = v.get("角色")
        if member is None:
            role_change = bool(roles)
        else:
            role_change = roles is not None and roles != member.roles - {"member"}

        accounts = {}  # platform -> the roster's account, where it differs from what is linked now
        for col, platform in PLATFORM_COLUMNS.items():
            uid = v.get(col)
            have = [
                i.platform_user_id for i in (member.identities if member else []) if i.platform == platform
            ]
            if uid is not None and have != [uid]:
                accounts[platform] = uid
        report.accounts_linked += len(accounts)
        account_change = bool(accounts)

        if member is None:
            report.created += 1
        elif changes or move or role_change or account_change:
            report.updated += 1
        else:
            report.unchanged += 1
        if dry_run:
            continue

        if member is None:
            member = existing[r.employee_no] = Member(employee_no=r.employee_no, name=v["姓名"])
            session.add(member)
        for attr, value in changes.items():
            setattr(member, attr, value)
        if move:
            branch = None
            if want_branch:
                branch = branches.get(want_branch)
                if branch is None:
                    branch = branches[want_branch] = Branch(name=want_branch)
                    session.add(branch)
            group = None
            if branch is not None and want_group:
                group = groups.get((want_branch, want_group))
                if group is None:
                    group = groups[(want_branch, want_group)] = Group(name=want_group, branch=branch)
                    session.add(group)
            member.branch, member.group = branch, group
        if roles is not None and role_change:
            member.set_roles(roles)
        links.extend((member, platform, uid) for platform, uid in accounts.items())

    report.branches_created = sorted(new_branches)
    report.groups_created = [f"{b}/{g}" for b, g in sorted(new_groups)]
    report.written = bool(report.created or report.updated)
    if not dry_run:
        session.flush()
        _link_all(session, links)
        session.flush()


def _existing_members(session: Session, rows: list[_Row]) -> dict[str, Member]:
    nos = [r.employee_no for r in rows if r.employee_no]
    found: dict[str, Member] = {}
    for i in range(0, len(nos), 500):
        for m in session.scalars(select(Member).where(Member.employee_no.in_(nos[i : i + 500]))):
            found[m.employee_no] = m
    return found


def _link_all(session: Session, links: list[tuple[Member, str, str]]) -> None:
    """Link the roster's accounts in bulk (as `models.member.link_identity` does, one query per 500 accounts).

    An account row that exists is moved to its member (and marked reachable again); a member's earlier account
    on the same platform is removed unless another row of this import takes it over.
    """
    if not links:
        return
    by_account: dict[tuple[str, str], PlatformIdentity] = {}
    held: dict[tuple[int, str], list[PlatformIdentity]] = {}
    for platform in {p for _m, p, _u in links}:
        uids = [u for _m, p, u in links if p == platform]
        ids = [m.id for m, p, _u in links if p == platform]
        for i in range(0, len(uids), 500):
            for ident in session.scalars(
                select(PlatformIdentity).where(
                    PlatformIdentity.platform == platform,
                    PlatformIdentity.platform_user_id.in_(uids[i : i + 500]),
                )
            ):
                by_account[(platform, ident.platform_user_id)] = ident
        for i in range(0, len(ids), 500):
            for ident in session.scalars(
                select(PlatformIdentity).where(
                    PlatformIdentity.platform == platform, PlatformIdentity.member_id.in_(ids[i : i + 500])
                )
            ):
                held.setdefault((ident.member_id, platform), []).append(ident)
    taken = {(p, u) for _m, p, u in links}
    touched: set[int] = set()
    for member, platform, uid in links:
        for old in held.get((member.id, platform), []):
            if old.platform_user_id != uid and (platform, old.platform_user_id) not in taken:
                session.delete(old)
        ident = by_account.get((platform, uid))
        if ident is None:
            session.add(PlatformIdentity(platform=platform, platform_user_id=uid, member_id=member.id))
        else:
            touched.add(ident.member_id)
            ident.member_id, ident.unreachable = member.id, False
    session.flush()
    touched |= {m.id for m, _p, _u in links}
    for member_id in touched:
        owner = session.identity_map.get(session.identity_key(Member, member_id))
        if owner is not None:
            session.expire(owner, ["identities"])
