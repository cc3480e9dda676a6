"""The terminal sandbox goes through the same core as the page."""

from tests.conftest import add_member


def test_sandbox_cli_chat(app, bot):
    add_member(bot, name="赵敏", employee_no="30001")
    result = app.test_cli_runner().invoke(
        args=["sandbox", "chat", "--member", "30001"], input="我的信息\n帮助\n"
    )
    assert result.exit_code == 0, result.output
    assert "工号：30001" in result.output and "赵敏您好" in result.output


def test_sandbox_cli_shows_a_file_by_its_name(app, bot):
    from bot import outbox
    from bot.message import File

    add_member(bot, name="赵敏", employee_no="30001")
    with bot.db.transaction() as s:
        outbox.enqueue(s, platform="sandbox", target_kind="user", target_id="sb-30001",
                       message=File("8月生日名单.xlsx", b"PK-data"), key="f1", now=bot.clock.now())  # fmt: skip
    result = app.test_cli_runner().invoke(args=["sandbox", "chat", "--member", "30001"], input="帮助\n")
    assert result.exit_code == 0, result.output
    assert "[文件] 8月生日名单.xlsx（在试用页面 /sandbox/file/" in result.output


def test_sandbox_cli_unknown_member(app):
    result = app.test_cli_runner().invoke(args=["sandbox", "chat", "--member", "nobody"], input="")
    assert result.exit_code != 0 and "没有工号" in result.output


def test_sandbox_cli_refused_when_the_sandbox_is_disabled(tmp_path):
    from sqlalchemy import func, select

    from models.member import PlatformIdentity
    from tests.test_sandbox_e2e import production_app

    app = production_app(tmp_path)
    bot = app.extensions["bot"]
    add_member(bot, name="赵敏", employee_no="30001")
    result = app.test_cli_runner().invoke(args=["sandbox", "chat", "--member", "30001"], input="我的信息\n")
    assert (
        result.exit_code != 0 and "试用沙盒已关闭" in result.output and "bash scripts/run.sh" in result.output
    )
    with bot.db.Session() as s:
        assert s.scalar(select(func.count()).select_from(PlatformIdentity)) == 0  # no sandbox account linked
    bot.db.dispose()
