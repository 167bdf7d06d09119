"""Whether an image or a collection may become public, and the requests that wait for a
moderator, are the moderation app's to decide: it registers its gate from AppConfig.ready()
(studio.moderation.gate.ModerationGate), and the gallery asks `gate` without importing
it (the import layers, docs/ARCHITECTURE.md)."""

from typing import Any, Protocol


class Gate(Protocol):
    def refusal(self, user: Any) -> str | None:
        """Why `user` may not make anything public (e.g. strikes), or None."""

    def needs_approval(self) -> bool:
        """Whether going public waits for a moderator's approval."""

    def pending(self, *, image: Any = None, collection: Any = None) -> Any:
        """The request to publish it that waits (it has a `created_at`), or None."""

    def request_open(self, *, user: Any, image: Any = None, collection: Any = None) -> None:
        """Ask the moderators to publish it."""

    def request_withdraw(self, *, image: Any = None, collection: Any = None) -> None:
        """Withdraw a waiting request to publish it."""


class OpenGate:
    """Without a moderation app: anyone who may share makes things public at once."""

    def refusal(self, user: Any) -> str | None:
        return None

    def needs_approval(self) -> bool:
        return False

    def pending(self, *, image: Any = None, collection: Any = None) -> Any:
        return None

    def request_open(self, *, user: Any, image: Any = None, collection: Any = None) -> None:
        raise AssertionError("nothing needs approval without a moderation app")

    def request_withdraw(self, *, image: Any = None, collection: Any = None) -> None:
        return None


gate: Gate = OpenGate()


def gate_register(new_gate: Gate) -> None:
    global gate
    gate = new_gate
