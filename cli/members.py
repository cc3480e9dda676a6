"""Member roster, demo union and console accounts from the command line.

flask --app app members import PATH [--dry-run] [--partial]
flask --app app demo [--if-empty] [--members N] [--seed S]
flask --app app staff create USERNAME --role ROLE [--password P] [--name N] [--member EMPLOYEE_NO]
flask --app app staff list
"""

from __future__ import annotations

from pathlib import Path

import click
from flask.cli import AppGroup
from sqlalchemy import func, select

from bot.permissions import can, needs_unit
from cli import bot
from models.member import ROLE_LABELS, Member
from models.staff import StaffAccount

members_cli = AppGroup("members", help="会员名册：导入")
staff_cli = AppGroup("staff", help="后台账号：创建与查看")

STAFF_ROLES = tuple(r for r in ROLE_LABELS if can([r], "console.login"))
MIN_PASSWORD = 8


@members_cli.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="只检查并报告，不写入。")
@click.option("--partial", is_flag=True, help="有错误的行跳过，其余照常导入。")
def import_cmd(path: Path, dry_run: bool, partial: bool) -> None:
    """Import a roster (.xlsx or .csv with Chinese headers 姓名, 工号, 分会, 小组 ...)."""
    from models.roster import import_roster

    data = path.read_bytes()
    with bot().db.transaction() as s:
        report = import_roster(s, data, path.name, dry_run=dry_run, partial=partial)
    for err in report.errors:
        click.echo(str(err))
    for warning in report.warnings:
        click.echo(f"提醒：{warning}")
    if report.branches_created:
        click.echo(("将新建" if dry_run else "新建") + "分会：" + "、".join(report.branches_created))
    if report.groups_created:
        click.echo(("将新建" if dry_run else "新建") + "小组：" + "、".join(report.groups_created))
    click.echo(report.summary())
    if not report.ok:
        raise SystemExit(1)


@click.command("demo")
@click.option("--if-empty", is_flag=True, help="已有会员时什么也不做。")
@click.option("--members", "count", default=200, show_default=True, help="示例会员人数。")
@click.option("--seed", default=42, show_default=True, help="随机种子（同一种子生成同样的数据）。")
def demo_cmd(if_empty: bool, count: int, seed: int) -> None:
    """Seed the demo union 示例人民医院工会 (branches, groups, ~200 members, roles, console logins).

    Safe to repeat: only missing demo rows are added. --if-empty does nothing once any member exists.
    """
    from handlers.meetings import seed_demo as seed_meetings
    from models.activity import seed_demo as seed_activities
    from models.demo import seed_demo, seed_department_login
    from models.proposal import seed_demo as seed_proposals

    with bot().db.transaction() as s:
        if if_empty and s.scalar(select(func.count()).select_from(Member)):
            click.echo("已有会员数据，跳过示例数据。")
            return
        summary = seed_demo(s, members=count, seed=seed)
        # a congress collecting now, departments with contacts
        added = seed_proposals(s, bot().clock.now(), bot().clock.tz)
        seed_department_login(s, summary)
        activities = seed_activities(s, bot().clock.now(), bot().clock.tz)
        meetings = seed_meetings(s, bot())
    for line in summary.lines():
        click.echo(line)
    click.echo(
        f"提案：新增届次 {added['congress']} 个、承办部门 {added['departments']} 个、联系人 {added['contacts']} 人。"
    )
    click.echo(f"活动：新增 {activities} 个可报名的活动；会议：新增 {meetings} 个。")


@staff_cli.command("create")
@click.argument("username")
@click.option("--role", required=True, help=f"角色：{', '.join(STAFF_ROLES)}（也可写中文，如 干事）。")
@click.option("--password", default=None, help="不填则提示输入（输入两次，不显示）。")
@click.option("--name", "display_name", default="", help="显示名称。")
@click.option("--member", "employee_no", default=None, help="关联会员的工号。")
def staff_create(username: str, role: str, password: str | None, display_name: str, employee_no: str | None):
    """Create a console account (the password is stored hashed)."""
    username = username.strip()
    role = _staff_role(role)
    if not username or len(username) > 64:
        raise click.UsageError("用户名不能为空，最多64个字符。")
    if password is None:
        password = click.prompt("密码", hide_input=True, confirmation_prompt="再输入一次")
    if len(password) < MIN_PASSWORD:
        raise click.UsageError(f"密码至少{MIN_PASSWORD}位。")
    with bot().db.transaction() as s:
        if s.scalar(select(StaffAccount).where(StaffAccount.username == username)) is not None:
            raise click.UsageError(f"账号 {username} 已存在。")
        member = None
        if not employee_no and needs_unit(role):
            raise click.UsageError(
                f"{ROLE_LABELS[role]}只管理自己的分会或小组，账号必须关联会员：请加上 --member 工号"
                f"（例如 flask --app app staff create {username} --role {role} --member 10086）。"
            )
        if employee_no:
            member = s.scalar(select(Member).where(Member.employee_no == employee_no))
            if member is None:
                raise click.UsageError(f"没有工号为 {employee_no} 的会员。")
        account = StaffAccount(
            username=username,
            display_name=display_name or (member.name if member else username),
            role=role,
            member=member,
        )
        account.set_password(password)
        s.add(account)
    linked = f"，关联会员 {member.name}（{member.employee_no}）" if member else ""
    click.echo(f"已创建后台账号 {username}（{ROLE_LABELS[role]}）{linked}。")


@staff_cli.command("list")
def staff_list() -> None:
    """List console accounts."""
    with bot().db.transaction() as s:
        for a in s.scalars(select(StaffAccount).order_by(StaffAccount.username)):
            state = "" if a.active else "（已停用）"
            member = f" 会员:{a.member.employee_no}" if a.member else ""
            click.echo(f"{a.username}\t{ROLE_LABELS.get(a.role, a.role)}\t{a.display_name}{member}{state}")


def _staff_role(value: str) -> str:
    value = value.strip()
    by_label = {label: code for code, label in ROLE_LABELS.items()}
    role = by_label.get(value, value.lower())
    if role not in STAFF_ROLES:
        labels = "、".join(f"{r}（{ROLE_LABELS[r]}）" for r in STAFF_ROLES)
        raise click.UsageError(f"未知或不能登录后台的角色：{value}。可选：{labels}")
    return role


commands = [members_cli, demo_cmd, staff_cli]
