"""200 members sign up at once for 50 places through the real HTTP stack (werkzeug, threads), on SQLite and
PostgreSQL: exactly 50 confirmed, 150 waitlisted, nobody twice, nothing overbooked."""

from __future__ import annotations

import http.client
import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from werkzeug.serving import make_server

from models import Branch, Group, Member
from models.activity import Activity, Signup, cancel_signup, sign_up

MEMBERS, PLACES = 200, 50


def _seed(db) -> int:
    now = datetime.now(UTC)
    with db.transaction() as s:
        b = Branch(name="内科分会")
        g = Group(name="心内科小组", branch=b)
        for i in range(MEMBERS):
            s.add(Member(name=f"会员{i:03d}", employee_no=f"C{i:04d}", branch=b, group=g, gender="女"))
        a = Activity(
            title="秋游",
            starts_at=now + timedelta(days=7),
            signup_deadline=now + timedelta(days=6),
            capacity=PLACES,
            taken=0,
            seq=0,
            waitlist_enabled=True,
            companions_max=0,
            questions=[],
            audience_kind="all",
            audience_ids=[],
            status="open",
        )
        s.add(a)
        s.flush()
        return a.id


def test_200_members_50_places_over_http(any_app):
    db = any_app.extensions["db"]
    aid = _seed(db)
    server = make_server("127.0.0.1", 0, any_app, threaded=True)
    port = server.server_port
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()

    def post(no: str, text: str = f"报名 {aid}") -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            body = json.dumps({"member": no, "text": text})
            conn.request("POST", "/sandbox/send", body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            return resp.status
        finally:
            conn.close()

    def send(pairs: list[tuple[str, str]]) -> list[int]:
        with ThreadPoolExecutor(16) as pool:
            return list(pool.map(lambda p: post(*p), pairs))

    requests = [f"C{i:04d}" for i in range(MEMBERS)]
    requests += random.Random(5).sample(requests, 40)  # some members tap twice
    random.Random(7).shuffle(requests)
    try:
        statuses = send([(no, f"报名 {aid}") for no in requests])
        assert statuses.count(200) == len(requests), statuses
        _check_signups(db, aid)
        # Then 30 confirmed and 20 waitlisted members cancel at once: the freed places go to the earliest
        # waiting members, in order, never more than the capacity.
        with db.Session() as s:
            confirmed = s.scalars(
                select(Signup).where(Signup.status == "confirmed").order_by(Signup.seq)
            ).all()
            waiting = s.scalars(
                select(Signup).where(Signup.status == "waitlisted").order_by(Signup.seq)
            ).all()
            leaving = [r.member.employee_no for r in confirmed[:30]] + [
                r.member.employee_no for r in waiting[5:25]
            ]
            expected_in = {r.member_id for r in confirmed[30:]} | {r.member_id for r in waiting[:5]}
            expected_in |= {r.member_id for r in waiting[25:50]}
        statuses = send([(no, f"取消报名 {aid}") for no in leaving])
        assert statuses.count(200) == len(leaving)
    finally:
        server.shutdown()
        thread.join()
    with db.Session() as s:
        by_status = dict(
            s.execute(
                select(Signup.status, func.count()).where(Signup.activity_id == aid).group_by(Signup.status)
            ).all()
        )
        assert by_status == {"confirmed": PLACES, "waitlisted": MEMBERS - PLACES - 50, "cancelled": 50}
        assert s.get(Activity, aid).taken == PLACES
        now_in = set(s.scalars(select(Signup.member_id).where(Signup.status == "confirmed")))
        assert now_in == expected_in


def _check_signups(db, aid: int) -> None:
    with db.Session() as s:
        by_status = dict(
            s.execute(
                select(Signup.status, func.count()).where(Signup.activity_id == aid).group_by(Signup.status)
            ).all()
        )
        assert by_status == {"confirmed": PLACES, "waitlisted": MEMBERS - PLACES}
        per_member = s.execute(
            select(Signup.member_id, func.count()).group_by(Signup.member_id).having(func.count() > 1)
        ).all()
        assert per_member == []
        assert s.get(Activity, aid).taken == PLACES
        seqs = list(s.scalars(select(Signup.seq).where(Signup.activity_id == aid)))
        assert len(set(seqs)) == len(seqs)
        # first come, first served: every confirmed sign-up came before every waitlisted one
        confirmed = s.scalars(select(Signup.seq).where(Signup.status == "confirmed")).all()
        waiting = s.scalars(select(Signup.seq).where(Signup.status == "waitlisted")).all()
        assert max(confirmed) < min(waiting)


def test_rules_on_both_databases(any_app):
    """Waitlist order, companions that do not fit, re-signup after cancelling, the unique index — per database."""
    db = any_app.extensions["db"]
    aid = _seed(db)
    now = datetime.now(UTC)
    with db.transaction() as s:
        a = s.get(Activity, aid)
        a.capacity, a.companions_max = 3, 2
        m = s.scalars(select(Member).order_by(Member.employee_no)).all()
        assert sign_up(s, a, m[0], now, companions=1).outcome == "confirmed"  # 2 places
        assert sign_up(s, a, m[1], now).outcome == "confirmed"  # 3: full
        assert sign_up(s, a, m[2], now, companions=1).position == 1  # needs 2
        assert sign_up(s, a, m[3], now).position == 2  # needs 1
        assert sign_up(s, a, m[3], now).outcome == "duplicate"
        promoted = cancel_signup(s, a, m[1], now).promoted
        assert [p.member_id for p in promoted] == [m[3].id]  # m[2] does not fit, stays first
        assert sign_up(s, a, m[1], now).outcome == "waitlisted"  # back in, at the end
        promoted = cancel_signup(s, a, m[0], now).promoted
        assert [p.member_id for p in promoted] == [m[2].id]
        s.refresh(a)
        assert a.taken == 3
        ids = (m[2].id, m[5].id)
    with pytest.raises(IntegrityError), db.transaction() as s:
        s.add(
            Signup(activity_id=aid, member_id=ids[0], status="waitlisted", seq=999, companions=0, answers={})
        )
    with db.transaction() as s:  # cancelled history rows never block
        for seq in (1000, 1001):
            s.add(
                Signup(
                    activity_id=aid, member_id=ids[1], status="cancelled", seq=seq, companions=0, answers={}
                )
            )
