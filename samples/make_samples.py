"""Writes samples/roster_sample.xlsx and samples/roster_sample.csv (run once: .venv/bin/python samples/make_samples.py).

Twenty invented members covering every roster column and the accepted ways of writing each value.
"""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Font, PatternFill

HERE = Path(__file__).resolve().parent
HEADER = ["姓名", "工号", "分会", "小组", "手机", "性别", "岗位", "生日", "农历生日", "退休", "角色", "企业微信账号", "飞书账号", "职工代表", "有子女"]  # fmt: skip
ROWS = [
    ["林雅琴", "20001", "机关后勤分会", "行政办公小组", "13800020001", "女", "行政", "1970-03-12", "否", "否", "工会主席", "linyaqin", ""],
    ["郭志明", "20002", "机关后勤分会", "行政办公小组", "138 0002 0002", "男", "行政", "1991/7/5", "", "否", "干事、管理员", "guozhiming", "ou_sample_guozm"],
    ["孟晓婷", "20003", "机关后勤分会", "行政办公小组", "13800020003", "女", "行政", "1994年11月20日", "", "", "干事", "mengxt", ""],
    ["曹建华", "20004", "内科分会", "心内科小组", "13800020004", "男", "主任医师", "1968-09-01", "", "", "分会主席、提案委员", "caojh", ""],
    ["邓秀梅", "20005", "内科分会", "心内科小组", "13800020005", "女", "主管护师", "1982-04-08", "是", "", "小组长", "dengxm", ""],
    ["彭俊", "20006", "内科分会", "呼吸科小组", "13800020006", "男", "主治医师", "1987-12-30", "", "", "小组长", "", "ou_sample_pengj"],
    ["蒋丽", "20007", "内科分会", "呼吸科小组", "13800020007", "女", "护士", "1999-06-18", "", "", "", "jiangli", ""],
    ["唐文静", "20008", "外科分会", "骨科小组", "13800020008", "女", "护师", "1993-02-14", "五月初五", "", "", "tangwj", ""],
    ["韩磊", "20009", "外科分会", "骨科小组", "13800020009", "男", "副主任医师", "1976-10-03", "", "", "分会主席", "hanlei", ""],
    ["袁春燕", "20010", "外科分会", "普外科小组", "13800020010", "女", "主管护师", "1984-01-22", "", "", "小组长、提案委员", "yuancy", ""],
    ["许慧", "20011", "护理分会", "急诊科小组", "13800020011", "女", "护士", "2001-08-09", "", "", "", "xuhui", ""],
    ["苏婉婷", "20012", "护理分会", "手术室小组", "13800020012", "女", "护师", "1996-3-7", "", "", "小组长", "suwt", ""],
    ["魏红霞", "20013", "护理分会", "急诊科小组", "13800020013", "女", "副主任护师", "1974-闰4-15", "是", "", "分会主席、帮扶审核", "weihx", ""],
    ["叶佳怡", "20014", "医技分会", "检验科小组", "13800020014", "女", "检验师", "1995-05-20", "", "", "小组长", "", "ou_sample_yejy"],
    ["范鹏", "20015", "医技分会", "药剂科小组", "13800020015", "男", "药师", "1990-09-09", "", "", "", "fanpeng", ""],
    ["金桂英", "20016", "医技分会", "检验科小组", "0571-88880016", "女", "主管检验师", "1979-07-07", "", "", "分会主席", "jinguiying", ""],
    ["汪国强", "20017", "机关后勤分会", "后勤保障小组", "13800020017", "男", "工勤", "1973-12-12", "", "N", "分会主席、帮扶审核", "", ""],
    ["钟淑珍", "20018", "离退休分会", "离退休第一小组", "13800020018", "女", "退休", "1958-02-28", "腊月十二", "是", "分会主席", "", ""],
    ["顾德福", "20019", "离退休分会", "离退休第一小组", "13800020019", "男", "退休", "1955-10-01", "", "Y", "小组长", "", ""],
    ["杜凤兰", "20020", "离退休分会", "离退休第二小组", "13800020020", "女", "退休", "1963年8月15日", "八月十五", "1", "", "", ""],
]  # fmt: skip


DELEGATES = {"20001", "20004", "20009", "20010", "20013", "20016"}
CHILDREN = {"20004": "是", "20005": "有", "20008": "是", "20010": "有", "20012": "是", "20015": "无", "20018": "否"}  # fmt: skip
ROWS = [[*r, "是" if r[1] in DELEGATES else "", CHILDREN.get(r[1], "")] for r in ROWS]


def _xlsx_value(col: str, value: str):
    """The Excel file stores plain dates as real date cells, as Excel users do."""
    if col == "生日" and value.count("-") == 2 and "闰" not in value:
        return datetime.strptime(value, "%Y-%m-%d")
    return value


def main() -> None:
    wb = Workbook()
    ws = wb.active
    ws.title = "会员名册"
    ws.append(HEADER)
    for cell in ws[1]:
        cell.font = Font(bold=True)
        if cell.value in ("姓名", "工号"):
            cell.fill = PatternFill("solid", fgColor="FFE699")
    for row in ROWS:
        ws.append([_xlsx_value(col, v) for col, v in zip(HEADER, row, strict=True)])
    for row in ws.iter_rows(min_row=2):
        for cell in row:
            if HEADER[cell.column - 1] == "生日" and isinstance(cell.value, datetime):
                cell.number_format = "yyyy-mm-dd"
            elif HEADER[cell.column - 1] in ("工号", "手机"):
                cell.number_format = "@"
    for letter, width in zip(
        "ABCDEFGHIJKLMNO", (8, 8, 12, 14, 15, 5, 11, 15, 10, 5, 20, 14, 17, 9, 7), strict=True
    ):
        ws.column_dimensions[letter].width = width
    ws.freeze_panes = "A2"
    notes = wb.create_sheet("填写说明")
    for line in (
        "必填列：姓名、工号；按工号更新已有会员，空白单元格表示不修改。",
        "生日：1980-05-01、1980/5/1、1980年5月1日 或 Excel 日期。",
        "农历生日：填“是”表示生日列是农历日期（闰月写 1980-闰4-8）；也可直接填农历月日，如 四月初八、闰4-8。",
        "退休：是/否。性别：男/女。角色用顿号分隔：工会主席、干事、分会主席、小组长、提案委员、帮扶审核、管理员、会员。",
        "企业微信账号 / 飞书账号：填写后该账号无需再绑定身份。职工代表：是/否。",
        "有子女：是/否（或 有/无），六一儿童节祝福发给有子女的会员；空白表示不修改。",
    ):
        notes.append([line])
    wb.save(HERE / "roster_sample.xlsx")

    with (HERE / "roster_sample.csv").open("w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerows(ROWS)


if __name__ == "__main__":
    main()
