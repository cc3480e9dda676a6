"""Console pages: login, dashboard, members (search, edit, roles, identities) and the roster import."""

from __future__ import annotations

import os
import re
import secrets
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from admin import (
    SESSION_CSRF,
    SESSION_STAFF,
    current_staff,
    nav,
    password_stamp,
    protect,
    require,
)
from admin.models import StaffLoginFailure
from admin.outbox import PLATFORM_LABELS
from admin.outbox import describe as describe_outbox
from bot.permissions import can
from models.member import ROLE_LABELS, ROLES, Branch, Group, Member, PlatformIdentity
from models.messaging import OutboxMessage
from models.staff import StaffAccount
from models.wecom import active_alerts

bp = protect(
    Blueprint(
        "admin",
        __name__,
        url_prefix="/admin",
        template_folder="templates",
        static_folder="static",
        static_url_path="/static",
    )
)

nav.register("工作台", "admin.dashboard", "console.login", order=0)
nav.register("会员", "admin.members", "members.view", order=10, match=("admin.member_detail",))
nav.register("名单导入", "admin.import_roster", "members.import", order=11, match=("admin.import_",))

THROTTLE_MAX = 5
THROTTLE_WINDOW = timedelta(minutes=15)
PAGE_SIZE = 20
LOGIN_FAILED = "用户名或密码错误"
_DUMMY_HASH = generate_password_hash("not-a-real-password")


def _db():
    return current_app.extensions["db"]


def _now():
    return current_app.extensions["bot"].clock.now()


# ------------------------------------------------------------------------------------------------ login
def _safe_next(target: str | None) -> str:
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/admin") and "\\" not in target:
            return target
    return url_for("admin.dashboard")


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        if current_staff() is not None:
            return redirect(_safe_next(request.args.get("next")))
        return render_template("admin/login.html", next=request.args.get("next", ""), username="")

    username = (request.form.get("username") or "").strip()[:64]
    password = request.form.get("password") or ""
    key = username.lower()
    now = _now()
    error = LOGIN_FAILED
    with _db().transaction() as s:
        s.execute(delete(StaffLoginFailure).where(StaffLoginFailure.at < now - timedelta(days=1)))
        failures = s.scalar(
            select(func.count())
            .select_from(StaffLoginFailure)
            .where(StaffLoginFailure.username == key, StaffLoginFailure.at >= now - THROTTLE_WINDOW)
        )
        if failures >= THROTTLE_MAX:
            error = f"登录失败次数过多，该账号已暂时锁定。请 {THROTTLE_WINDOW.seconds // 60} 分钟后再试，或联系管理员。"
            acc = None
        else:
            acc = (
                s.scalar(select(StaffAccount).where(StaffAccount.username == username)) if username else None
            )
            if acc is None:
                check_password_hash(_DUMMY_HASH, password)  # same work as a real check
            elif not (acc.check_password(password) and acc.active and can(acc.roles, "console.login")):
                acc = None
            if acc is None:
                s.add(StaffLoginFailure(username=key, remote_addr=(request.remote_addr or "")[:64], at=now))
            else:
                s.execute(delete(StaffLoginFailure).where(StaffLoginFailure.username == key))
                staff_id, stamp = acc.id, password_stamp(acc.password_hash)
    if acc is None:
        status = 429 if error != LOGIN_FAILED else 401
        return (
            render_template(
                "admin/login.html", error=error, next=request.form.get("next", ""), username=username
            ),
            status,
        )
    nxt = _safe_next(request.form.get("next"))
    session.clear()  # a fresh session (and CSRF token) on every login
    session[SESSION_STAFF] = staff_id
    session["staff_pw"] = stamp
    session["staff_at"] = now.timestamp()
    session[SESSION_CSRF] = secrets.token_urlsafe(32)
    return redirect(nxt)


@bp.post("/logout")
def logout():
    session.clear()
    flash("已退出登录。", "ok")
    return redirect(url_for("admin.login"))


# -------------------------------------------------------------------------------------------- dashboard
@bp.get("/")
@require("console.login")
def dashboard():
    staff = current_staff()
    with _db().Session() as s:
        stats: dict[str, Any] = {
            "members": s.scalar(select(func.count()).select_from(Member).where(Member.active.is_(True))),
            "bound": s.scalar(
                select(func.count(func.distinct(PlatformIdentity.member_id)))
                .join(Member)
                .where(Member.active.is_(True))
            ),
        }
        dead_rows: list[OutboxMessage] = []
        if staff.can("outbox.view"):
            counts = dict(
                s.execute(
                    select(OutboxMessage.status, func.count())
                    .where(OutboxMessage.status.in_(("pending", "sending", "dead")))
                    .group_by(OutboxMessage.status)
                ).all()
            )
            stats["pending"] = counts.get("pending", 0) + counts.get("sending", 0)
            stats["dead"] = counts.get("dead", 0)
            dead_rows = list(
                s.scalars(
                    select(OutboxMessage)
                    .where(OutboxMessage.status == "dead")
                    .order_by(OutboxMessage.id.desc())
                    .limit(10)
                )
            )
        dead = describe_outbox(s, dead_rows)
        alerts = active_alerts(s)  # e.g. WeCom 60020: the IP staff must trust, shown to every account
    return render_template("admin/dashboard.html", stats=stats, dead=dead, alerts=alerts)


# ---------------------------------------------------------------------------------------------- members
def _branches(s: Session) -> list[Branch]:
    return list(s.scalars(select(Branch).order_by(Branch.name)))


def _groups(s: Session) -> list[Group]:
    return list(s.scalars(select(Group).join(Branch).order_by(Branch.name, Group.name)))


def _int_arg(name: str) -> int | None:
    value = request.args.get(name, "")
    return int(value) if value.isdigit() else None


@bp.get("/members")
@require("members.view")
def members():
    q = (request.args.get("q") or "").strip()[:50]
    branch_id = _int_arg("branch")
    group_id = _int_arg("group")
    status = request.args.get("status", "active")
    page = max(_int_arg("page") or 1, 1)

    query = (
        select(Member)
        .outerjoin(Branch, Member.branch_id == Branch.id)
        .outerjoin(Group, Member.group_id == Group.id)
    )
    if q:
        conds = [
            Member.name.contains(q, autoescape=True),
            Member.employee_no.istartswith(q, autoescape=True),
            Branch.name.contains(q, autoescape=True),
            Group.name.contains(q, autoescape=True),
        ]
        if q.isdigit() and len(q) <= 11:
            conds.append(Member.phone.endswith(q, autoescape=True))
        query = query.where(or_(*conds))
    if branch_id:
        query = query.where(Member.branch_id == branch_id)
    if group_id:
        query = query.where(Member.group_id == group_id)
    if status == "active":
        query = query.where(Member.active.is_(True))
    elif status == "inactive":
        query = query.where(Member.active.is_(False))
    else:
        status = "all"

    with _db().Session() as s:
        total = s.scalar(select(func.count()).select_from(query.subquery()))
        pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
        page = min(page, pages)
        rows = list(
            s.scalars(query.order_by(Member.employee_no).offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE))
        )
        items = [
            {
                "id": m.id,
                "name": m.name,
                "employee_no": m.employee_no,
                "branch": m.branch.name if m.branch else "",
                "group": m.group.name if m.group else "",
                "phone_tail": m.phone_tail,
                "roles": [ROLE_LABELS.get(r, r) for r in ROLES if r in m.roles and r != "member"],
                "bound": bool(m.identities),
                "active": m.active,
                "retired": m.retired,
            }
            for m in rows
        ]
        branches, groups = _branches(s), _groups(s)
        group_options = [(g.id, f"{g.branch.name} / {g.name}", g.branch_id) for g in groups]
    args = {"q": q, "branch": branch_id or "", "group": group_id or "", "status": status}
    return render_template(
        "admin/members.html",
        items=items,
        total=total,
        page=page,
        pages=pages,
        args=args,
        branches=branches,
        group_options=group_options,
    )


# 有子女 (the 六一 greeting's audience) is tri-state: a blank roster cell means not known, and is not sent to
CHILDREN_CHOICE = {None: "", True: "yes", False: "no"}
PHONE_RE = re.compile(r"^\+?[0-9][0-9-]{5,19}$")


def _member_or_404(s: Session, member_id: int) -> Member:
    m = s.get(Member, member_id)
    if m is None:
        abort(404)
    return m


def _form_from(m: Member) -> dict[str, Any]:
    return {
        "name": m.name,
        "branch_id": m.branch_id or "",
        "group_id": m.group_id or "",
        "phone": m.phone or "",
        "gender": m.gender or "",
        "job_title": m.job_title or "",
        "birthday": m.birthday.isoformat() if m.birthday else "",
        "birthday_is_lunar": m.birthday_is_lunar,
        "lunar_birth_month": m.lunar_birth_month or "",
        "lunar_birth_day": m.lunar_birth_day or "",
        "lunar_birth_leap": m.lunar_birth_leap,
        "retired": m.retired,
        "is_delegate": m.is_delegate,
        "active": m.active,
        "greeting_opt_out": m.greeting_opt_out,
        "has_children": CHILDREN_CHOICE[m.has_children],
    }


def _render_member(s: Session, m: Member, form: dict[str, Any], errors: dict[str, str], status: int = 200):
    staff = current_staff()
    identities = [
        {
            "id": i.id,
            "platform": i.platform,
            "user_id": i.platform_user_id,
            "unreachable": i.unreachable,
            "at": i.created_at,
        }
        for i in sorted(m.identities, key=lambda i: i.id)
    ]
    return (
        render_template(
            "admin/member_detail.html",
            member={"id": m.id, "name": m.name, "employee_no": m.employee_no, "updated_at": m.updated_at},
            form=form,
            errors=errors,
            roles=[(r, ROLE_LABELS.get(r, r), r in m.roles) for r in ROLES if r != "member"],
            identities=identities,
            branches=_branches(s),
            group_options=[(g.id, f"{g.branch.name} / {g.name}") for g in _groups(s)],
            can_edit=staff.can("members.edit"),
            can_roles=staff.can("members.roles"),
            can_grant_admin=staff.can("members.grant_admin"),
            platform_labels=PLATFORM_LABELS,
        ),
        status,
    )


@bp.get("/members/<int:member_id>")
@require("members.view")
def member_detail(member_id: int):
    with _db().Session() as s:
        m = _member_or_404(s, member_id)
        return _render_member(s, m, _form_from(m), {})


def _parse_member_form(s: Session, f) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """(form values to re-show, errors by field, cleaned values)."""
    form = {
        k: (f.get(k) or "").strip()
        for k in (
            "name",
            "branch_id",
            "group_id",
            "phone",
            "gender",
            "job_title",
            "birthday",
            "lunar_birth_month",
            "lunar_birth_day",
            "has_children",
        )
    }
    for flag in (
        "birthday_is_lunar",
        "lunar_birth_leap",
        "retired",
        "is_delegate",
        "active",
        "greeting_opt_out",
    ):
        form[flag] = f.get(flag) == "1"
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}

    if not form["name"]:
        errors["name"] = "请填写姓名。"
    elif len(form["name"]) > 50:
        errors["name"] = "姓名最多 50 个字。"
    clean["name"] = form["name"]

    branch = s.get(Branch, int(form["branch_id"])) if form["branch_id"].isdigit() else None
    if form["branch_id"] and branch is None:
        errors["branch_id"] = "请选择列表中的分会。"
    group = s.get(Group, int(form["group_id"])) if form["group_id"].isdigit() else None
    if form["group_id"] and group is None:
        errors["group_id"] = "请选择列表中的小组。"
    elif group is not None:
        if branch is None:
            branch = group.branch
            form["branch_id"] = str(branch.id)
        elif group.branch_id != branch.id:
            errors["group_id"] = f"小组“{group.name}”不属于分会“{branch.name}”，请重新选择。"
    clean["branch"], clean["group"] = branch, group

    phone = form["phone"].replace(" ", "")
    if phone and not PHONE_RE.match(phone):
        errors["phone"] = "手机号格式不对，只填数字，例如 13800001234。"
    clean["phone"] = phone or None

    if form["gender"] not in ("", "男", "女"):
        errors["gender"] = "性别请选择 男 或 女。"
    clean["gender"] = form["gender"] or None

    if len(form["job_title"]) > 50:
        errors["job_title"] = "职务最多 50 个字。"
    clean["job_title"] = form["job_title"] or None

    birthday = None
    if form["birthday"]:
        try:
            birthday = date.fromisoformat(form["birthday"])
        except ValueError:
            errors["birthday"] = "生日格式不对，例如 1980-05-01。"
        else:
            if not date(1900, 1, 1) <= birthday <= current_app.extensions["bot"].clock.today():
                errors["birthday"] = "生日不在合理范围内。"
    clean["birthday"] = birthday

    clean["birthday_is_lunar"] = form["birthday_is_lunar"]
    lm, ld, leap = None, None, form["lunar_birth_leap"]
    if form["birthday_is_lunar"]:
        if form["lunar_birth_month"] or form["lunar_birth_day"]:
            lm = int(form["lunar_birth_month"]) if form["lunar_birth_month"].isdigit() else None
            ld = int(form["lunar_birth_day"]) if form["lunar_birth_day"].isdigit() else None
            if lm is None or not 1 <= lm <= 12:
                errors["lunar_birth_month"] = "农历月份填 1 到 12。"
            if ld is None or not 1 <= ld <= 30:
                errors["lunar_birth_day"] = "农历日期填 1 到 30。"
        elif birthday is not None:
            from bot.calendar import lunar_of

            _, lm, ld, leap = lunar_of(birthday)
            form.update(lunar_birth_month=lm, lunar_birth_day=ld, lunar_birth_leap=leap)
        elif "birthday" not in errors:
            errors["lunar_birth_month"] = "农历生日请填写农历月、日，或填写公历出生日期由系统换算。"
    else:
        leap = False
    clean.update(lunar_birth_month=lm, lunar_birth_day=ld, lunar_birth_leap=bool(leap and lm))
    for flag in ("retired", "is_delegate", "active", "greeting_opt_out"):
        clean[flag] = form[flag]
    children = {v: k for k, v in CHILDREN_CHOICE.items()}
    if form["has_children"] not in children:
        errors["has_children"] = "有无子女请选择 有、没有 或 不清楚。"
    elif "has_children" in f:  # a form without the field (an older page) leaves it as it was
        clean["has_children"] = children[form["has_children"]]
    return form, errors, clean


@bp.post("/members/<int:member_id>")
@require("members.edit")
def member_update(member_id: int):
    with _db().transaction() as s:
        m = _member_or_404(s, member_id)
        form, errors, clean = _parse_member_form(s, request.form)
        if errors:
            return _render_member(s, m, form, errors, 400)
        for k, v in clean.items():
            setattr(m, k, v)
    flash(f"已保存 {clean['name']} 的资料。", "ok")
    return redirect(url_for("admin.member_detail", member_id=member_id))


@bp.post("/members/<int:member_id>/roles")
@require("members.roles")
def member_roles(member_id: int):
    staff = current_staff()
    wanted = {r for r in request.form.getlist("roles") if r in ROLES and r != "member"}
    with _db().transaction() as s:
        m = _member_or_404(s, member_id)
        have = m.roles - {"member"}
        if not staff.can("members.grant_admin") and ("admin" in wanted) != ("admin" in have):
            abort(403)  # only an administrator grants or removes 管理员
        m.set_roles(wanted)
        name = m.name
    labels = "、".join(ROLE_LABELS[r] for r in ROLES if r in wanted) or "普通会员"
    flash(f"已更新 {name} 的角色：{labels}。", "ok")
    return redirect(url_for("admin.member_detail", member_id=member_id) + "#roles")


@bp.post("/members/<int:member_id>/identities/<int:identity_id>/unlink")
@require("members.edit")
def member_unlink(member_id: int, identity_id: int):
    with _db().transaction() as s:
        ident = s.get(PlatformIdentity, identity_id)
        if ident is None or ident.member_id != member_id:
            abort(404)
        label = PLATFORM_LABELS.get(ident.platform, ident.platform)
        s.delete(ident)
    flash(f"已解除{label}账号的绑定。该账号下次找机器人时需要重新绑定。", "ok")
    return redirect(url_for("admin.member_detail", member_id=member_id) + "#identities")


# --------------------------------------------------------------------------------------------- roster import
UPLOAD_MAX_AGE = 3600
ALLOWED = (".xlsx", ".csv")
SESSION_UPLOAD = "roster_upload"


def _upload_dir() -> Path:
    path = Path(current_app.config.get("ADMIN_UPLOAD_DIR") or Path(current_app.instance_path) / "uploads")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _clean_uploads(folder: Path) -> None:
    cutoff = time.time() - UPLOAD_MAX_AGE
    for p in folder.glob("roster-*"):
        try:
            if p.stat().st_mtime < cutoff:
                p.unlink()
        except OSError:
            pass


def _stored_upload() -> tuple[Path, str] | None:
    """The file kept between preview and confirm: (path on disk, original name), or None."""
    info = session.get(SESSION_UPLOAD)
    if not isinstance(info, dict):
        return None
    token, name = str(info.get("token", "")), str(info.get("name", ""))
    if not re.fullmatch(r"[A-Za-z0-9_-]{20,64}", token) or not name.lower().endswith(ALLOWED):
        return None
    path = _upload_dir() / f"roster-{token}{Path(name).suffix.lower()}"
    return (path, name) if path.is_file() else None


def _drop_upload() -> None:
    stored = _stored_upload()
    if stored:
        stored[0].unlink(missing_ok=True)
    session.pop(SESSION_UPLOAD, None)


def _run_import(data: bytes, filename: str, *, dry_run: bool, partial: bool):
    from models.roster import import_roster

    with _db().Session() as s:
        s.begin()
        report = import_roster(s, data, filename, dry_run=dry_run, partial=partial)
        if dry_run or not (report.ok or partial):
            s.rollback()  # a preview never writes; a failed all-or-nothing import writes nothing
        else:
            s.commit()
    return report


@bp.route("/members/import", methods=["GET", "POST"])
@require("members.import")
def import_roster():
    if request.method == "GET":
        stored = _stored_upload()
        if request.args.get("new"):
            _drop_upload()
            stored = None
        return render_template(
            "admin/import.html", report=None, filename=stored[1] if stored else None, partial=False
        )

    upload = request.files.get("file")
    if upload is None or not upload.filename:
        flash("请选择要导入的名单文件（.xlsx 或 .csv）。", "error")
        return redirect(url_for("admin.import_roster"))
    filename = os.path.basename(upload.filename.replace("\\", "/"))
    if not filename.lower().endswith(ALLOWED):
        flash("只支持 .xlsx 或 .csv 文件。WPS/Excel 里请“另存为”这两种格式之一。", "error")
        return redirect(url_for("admin.import_roster"))
    data = upload.read()
    if not data:
        flash("文件是空的，请检查后重新上传。", "error")
        return redirect(url_for("admin.import_roster"))

    folder = _upload_dir()
    _clean_uploads(folder)
    _drop_upload()
    token = secrets.token_urlsafe(24)
    path = folder / f"roster-{token}{Path(filename).suffix.lower()}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    session[SESSION_UPLOAD] = {"token": token, "name": filename}

    # the preview counts the good rows even when others have errors (partial), so the clerk sees both
    report = _run_import(data, filename, dry_run=True, partial=True)
    return render_template("admin/import.html", report=report, filename=filename, partial=False)


@bp.post("/members/import/confirm")
@require("members.import")
def import_confirm():
    stored = _stored_upload()
    if stored is None:
        flash("预览已过期或文件已导入，请重新上传名单。", "error")
        return redirect(url_for("admin.import_roster"))
    path, filename = stored
    partial = request.form.get("partial") == "1"
    report = _run_import(path.read_bytes(), filename, dry_run=False, partial=partial)
    if not report.ok and not partial:
        flash("名单里有错误，没有导入任何一行。请修改文件后重新上传，或勾选“跳过有错误的行”。", "error")
        return render_template("admin/import.html", report=report, filename=filename, partial=partial), 400
    _drop_upload()
    skipped = f"，跳过有错误的 {len(report.errors)} 处" if report.errors else ""
    flash(f"导入完成：新增 {report.created} 人，更新 {report.updated} 人{skipped}。", "ok")
    return redirect(url_for("admin.members"))


@bp.post("/members/import/cancel")
@require("members.import")
def import_cancel():
    _drop_upload()
    flash("已取消本次导入。", "ok")
    return redirect(url_for("admin.import_roster"))
