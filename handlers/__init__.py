"""Feature handlers. Each module registers its functions on the shared router when imported."""

from bot.router import Router

router = Router()

# Importing the modules registers their handlers; the order is the fallback menu's order.
# isort: off
from handlers import activities, help, members, greetings, meetings, proposals, care  # noqa: E402,F401
# isort: on

__all__ = ["router"]
