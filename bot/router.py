"""Handler registry and intent matching: trigger words anywhere in the sentence, patterns, exact phrases.

Handlers are plain functions `f(ctx) -> None` registered with `@router.handler(...)`; they answer with
`ctx.reply(...)`. Dialog steps, button actions and platform events register the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.context import Context

HandlerFunc = Callable[["Context"], None]

CANCEL_WORDS = {"取消", "退出", "算了", "不办了", "q", "quit", "exit"}


@dataclass
class Route:
    name: str
    func: HandlerFunc
    triggers: tuple[str, ...] = ()
    patterns: tuple[re.Pattern[str], ...] = ()
    exact: frozenset[str] = frozenset()
    together: tuple[tuple[str, ...], ...] = ()  # words that all appear, in any order: (取消, 报名)
    menu: str | None = None  # label for the fallback menu, e.g. "活动 — 查看可报名的活动"
    public: bool = False  # works before the user is bound to a member
    group_ok: bool = True  # False: in a group chat the user is asked to write privately
    priority: int = 0
    redact: bool = False  # what is typed is sensitive (a story): never kept in plain text, even on failure

    @property
    def help(self) -> str:
        return (self.func.__doc__ or "").strip().splitlines()[0] if self.func.__doc__ else ""


@dataclass
class Match:
    route: Route
    score: int
    args: str  # the text with the matched trigger removed
    cut: tuple[tuple[int, int], ...] = ()  # where the trigger stood in the text (for Context.raw_args)


@dataclass
class Router:
    routes: list[Route] = field(default_factory=list)
    dialogs: dict[str, HandlerFunc] = field(default_factory=dict)
    actions: dict[str, HandlerFunc] = field(default_factory=dict)
    events: dict[str, HandlerFunc] = field(default_factory=dict)
    redacted: set[str] = field(default_factory=set)  # "dialog:<name>", "action:<name>" with redact=True

    def handler(
        self,
        *triggers: str,
        patterns: tuple[str, ...] | list[str] = (),
        exact: tuple[str, ...] | list[str] = (),
        together: tuple[tuple[str, ...], ...] = (),
        menu: str | None = None,
        public: bool = False,
        group_ok: bool = True,
        priority: int = 0,
        name: str | None = None,
        redact: bool = False,
    ) -> Callable[[HandlerFunc], HandlerFunc]:
        def deco(func: HandlerFunc) -> HandlerFunc:
            self.routes.append(
                Route(
                    name=name or func.__name__,
                    func=func,
                    triggers=tuple(sorted(triggers, key=len, reverse=True)),
                    patterns=tuple(re.compile(p) for p in patterns),
                    exact=frozenset(e.lower() for e in exact),
                    together=tuple(tuple(words) for words in together),
                    menu=menu,
                    public=public,
                    group_ok=group_ok,
                    priority=priority,
                    redact=redact,
                )
            )
            return func

        return deco

    def dialog(self, name: str, redact: bool = False) -> Callable[[HandlerFunc], HandlerFunc]:
        """Register the function that receives every message while dialog `name` is active (`redact`: as for
        a route, what is typed in it is sensitive)."""

        def deco(func: HandlerFunc) -> HandlerFunc:
            self.dialogs[name] = func
            if redact:
                self.redacted.add(f"dialog:{name}")
            return func

        return deco

    def action(self, name: str, redact: bool = False) -> Callable[[HandlerFunc], HandlerFunc]:
        """Register a button action: a card button's payload {"do": name, ...} runs it."""

        def deco(func: HandlerFunc) -> HandlerFunc:
            self.actions[name] = func
            if redact:
                self.redacted.add(f"action:{name}")
            return func

        return deco

    def event(self, name: str) -> Callable[[HandlerFunc], HandlerFunc]:
        def deco(func: HandlerFunc) -> HandlerFunc:
            self.events[name] = func
            return func

        return deco

    def matches(self, text: str) -> list[Match]:
        """All routes that match, best first. Longer triggers win (取消报名 beats 报名)."""
        found: list[Match] = []
        low = text.lower()
        for route in self.routes:
            best: Match | None = None
            if low in route.exact:
                best = Match(route, 10_000 + route.priority, "", ((0, len(text)),))
            for pat in route.patterns:
                m = pat.search(text)
                if m:
                    cand = Match(
                        route,
                        1_000 + 10 * len(m.group(0)) + route.priority,
                        _remove(text, m.start(), m.end()),
                        (m.span(),),
                    )
                    best = cand if best is None or cand.score > best.score else best
            for trig in route.triggers:
                pos = low.find(trig.lower())
                if pos >= 0:
                    end = pos + len(trig)
                    cand = Match(
                        route, 10 * len(trig) + route.priority, _remove(text, pos, end), ((pos, end),)
                    )
                    if best is None or cand.score > best.score:
                        best = cand
                    break
            for words in route.together:
                cand = _together(route, text, words)
                if cand is not None and (best is None or cand.score > best.score):
                    best = cand
            if best is not None:
                found.append(best)
        found.sort(key=lambda m: m.score, reverse=True)
        return found

    def command(self, text: str) -> Match | None:
        """The route a message names and nothing else (我的报名, 我的提案): what a dialog step hands on when it
        was asked something else. None when the message says more, or two routes tie."""
        found = self.matches(text)
        if not found or found[0].args or (len(found) > 1 and found[1].score == found[0].score):
            return None
        return found[0]

    def menu_lines(self) -> list[str]:
        return [f"· {r.menu}" for r in self.routes if r.menu]


def _together(route: Route, text: str, words: tuple[str, ...]) -> Match | None:
    """All `words` anywhere in any order (羽毛球的报名帮我取消 / 帮我把报名取消了) score like one long trigger,
    so 取消 + 报名 beats 报名 alone and 取消 alone instead of tying with them."""
    low, cut = text.lower(), []
    for word in words:  # the first place of each word that no earlier word took
        pos = low.find(word.lower())
        while pos >= 0 and any(pos < e and s < pos + len(word) for s, e in cut):
            pos = low.find(word.lower(), pos + 1)
        if pos < 0:
            return None
        cut.append((pos, pos + len(word)))
    rest = text
    for s, e in sorted(cut, reverse=True):
        rest = rest[:s] + " " + rest[e:]
    args = re.sub(r"\s+", " ", rest).strip(" ,.!?:;")
    return Match(route, 10 * sum(len(w) for w in words) + route.priority, args, tuple(sorted(cut)))


def _remove(text: str, start: int, end: int) -> str:
    return re.sub(r"\s+", " ", (text[:start] + " " + text[end:])).strip(" ,.!?:;")


def is_cancel(text: str) -> bool:
    return text.strip().lower().rstrip("!.。") in CANCEL_WORDS
