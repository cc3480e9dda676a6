"""Feature handlers. Each module registers its functions on the shared router when imported."""

from bot.router import Router

router = Router()

# Importing the modules registers their handlers (order matters only for the fallback menu).
from handlers import activities, help, members  # noqa: E402,F401
from handlers import greetings, meetings  # noqa: E402,F401  (issue 8: greetings, meetings)
from handlers import proposals  # noqa: E402,F401  (issue 6: congress proposals and suggestions)
from handlers import care  # noqa: E402,F401  (issue 7: hardship reports and care events)

__all__ = ["router"]
