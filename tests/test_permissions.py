"""The permission table: every permission the code asks about exists (a typo must not silently deny or allow)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from bot.permissions import NOT_FOR_ADMIN, PERMISSIONS, can, roles_with
from models.member import ROLE_LABELS

ROOT = Path(__file__).resolve().parents[1]
SKIP = {".venv", "tests", "migrations", "node_modules", ".git"}
TEMPLATE_CAN = re.compile(r"""\.can\(\s*['"]([^'"]+)['"]\s*\)""")


def _source_files(suffix: str) -> list[Path]:
    return [p for p in ROOT.rglob(f"*{suffix}") if not SKIP & set(p.relative_to(ROOT).parts)]


def permissions_named_in(source: str) -> set[str]:
    """Permission names passed to can / ctx.can / staff.can / token_can / roles_with / require / nav.register,
    as literals or through a module-level constant (PERMISSION = "...")."""
    tree = ast.parse(source)
    consts = {
        t.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        for t in node.targets
        if isinstance(t, ast.Name)
    }

    def text(arg: ast.expr) -> str | None:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return arg.value
        return consts.get(arg.id) if isinstance(arg, ast.Name) else None

    found: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        args = node.args
        if name == "can":
            picked = args[1:2] if isinstance(f, ast.Name) else args[:1]
        elif name in ("token_can", "roles_with"):
            picked = args[:1]
        elif name == "require":
            picked = args
        elif name == "register" and isinstance(f.value, ast.Name) and f.value.id == "nav":  # type: ignore[union-attr]
            picked = args[2:3] + [k.value for k in node.keywords if k.arg == "permission"]
        else:
            continue
        found |= {t for t in map(text, picked) if t is not None}
    return found


def test_the_scanner_sees_each_way_of_asking():
    src = """
PERMISSION = "a.const"
can(roles, "a.can")
ctx.can("a.ctx")
staff.can("a.staff")
token_can("a.token")
roles_with("a.holders")
@require(PERMISSION)
def f(): ...
@require("a.one", "a.two")
def g(): ...
nav.register("x", "bp.index", "a.nav", order=1)
can(roles, permission)
"""
    assert permissions_named_in(src) == {
        "a.const", "a.can", "a.ctx", "a.staff", "a.token", "a.holders", "a.one", "a.two", "a.nav",
    }  # fmt: skip
    assert TEMPLATE_CAN.findall("{% if current_staff.can('members.import') %}") == ["members.import"]


def test_every_permission_named_in_code_exists():
    used: dict[str, set[str]] = {}
    for path in _source_files(".py"):
        for name in permissions_named_in(path.read_text(encoding="utf-8")):
            used.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    for path in _source_files(".html"):
        for name in TEMPLATE_CAN.findall(path.read_text(encoding="utf-8")):
            used.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    # the scan really reads the code base: it finds the permissions of the chat, the console and the API
    assert {"care.manage_all", "activities.own_branch", "members.grant_admin", "cases.console"} <= set(used)
    unknown = {name: sorted(where) for name, where in used.items() if name not in PERMISSIONS}
    assert unknown == {}


def test_the_table_names_only_known_roles():
    known = set(ROLE_LABELS)
    for permission, roles in PERMISSIONS.items():
        assert roles <= known, permission
    assert set(PERMISSIONS) >= NOT_FOR_ADMIN


def test_unknown_permission_raises():
    with pytest.raises(KeyError, match="cases.reveiw"):
        can({"chair"}, "cases.reveiw")


def test_roles_with_follows_the_admin_rule():
    assert roles_with("cases.review") == {"hardship_reviewer", "chair"}  # health data: not the admin
    assert roles_with("members.edit") == {"clerk", "chair", "admin"}
    assert roles_with("members.grant_admin") == {"admin"}
    for permission in PERMISSIONS:
        for role in ROLE_LABELS:
            assert can({role}, permission) == (role in roles_with(permission)), (role, permission)


def test_unit_scoped_roles_are_those_limited_to_their_own_branch_or_group():
    from bot.permissions import needs_unit

    assert needs_unit("branch_chair") and needs_unit("group_leader")
    for role in ("clerk", "chair", "hardship_reviewer", "proposal_reviewer", "department", "admin", "member"):
        assert not needs_unit(role), role
