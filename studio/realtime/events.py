"""Publishing events to browsers over the channel layer, from any thread.

Workers publish from plain threads. Every publish is run on one long-lived event loop:
the ASGI server's loop when this process serves websockets (the in-memory layer only
works on the loop its sockets wait on), else a background loop thread, so a worker
keeps one Redis connection instead of opening one per progress step.
"""

import asyncio
import logging
import threading

from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

EVENT_MESSAGE_TYPE = "studio.event"
# Server-side only: tells a user's open sockets to re-check what they may still see.
ACCESS_CHANGED_MESSAGE_TYPE = "access.changed"
SESSION_ENDED_MESSAGE_TYPE = "session.ended"
PUBLISH_TIMEOUT_S = 10

_lock = threading.Lock()
_server_loop = None
_background_loop = None


def bind_server_loop(loop):
    """Called by sockets when they connect: publish on the loop they listen on."""
    global _server_loop
    _server_loop = loop


def _publish_loop():
    global _background_loop
    if _server_loop is not None and _server_loop.is_running():
        return _server_loop
    with _lock:
        if _background_loop is None:
            _background_loop = asyncio.new_event_loop()
            threading.Thread(
                target=_background_loop.run_forever, name="event-publisher", daemon=True
            ).start()
        return _background_loop


async def apublish_all(messages):
    """Send each (group, payload) of messages: one channel-layer message per group, its
    payloads in order (consumers pass each on as an event of its own), the groups' sends
    concurrently. A worker's progress report for 32 jobs of a project is then one Redis
    send, not 32 in a row."""
    by_group = {}
    for group, payload in messages:
        by_group.setdefault(group, []).append(payload)
    layer = get_channel_layer()
    await asyncio.gather(
        *(
            layer.group_send(group, {"type": EVENT_MESSAGE_TYPE, "payloads": payloads})
            for group, payloads in by_group.items()
        )
    )


async def apublish(group, payload):
    await apublish_all([(group, payload)])


class GroupListener:
    """A channel of the channel layer joined to groups, for streams that are not socket
    consumers (the API's server-sent events): `async with GroupListener(groups) as
    listener`, then `await listener.receive(timeout)` for each message sent to the groups.
    Publishes of this process go to the loop it listens on, as a socket's do."""

    def __init__(self, groups):
        self.groups = list(groups)
        self.layer = get_channel_layer()
        # One receive at a time, kept across timeouts rather than canceled at each: a
        # canceled receive may drop the message it was taking (channels-redis).
        self.pending = None

    async def __aenter__(self):
        bind_server_loop(asyncio.get_running_loop())
        self.channel = await self.layer.new_channel()
        for group in self.groups:
            await self.layer.group_add(group, self.channel)
        return self

    async def __aexit__(self, *exc_info):
        if self.pending is not None:
            self.pending.cancel()
        for group in self.groups:
            await self.layer.group_discard(group, self.channel)

    async def receive(self, timeout):
        """The next message ({"type": ..., ...}), or None when none came within timeout."""
        if self.pending is None:
            self.pending = asyncio.ensure_future(self.layer.receive(self.channel))
        done, _ = await asyncio.wait({self.pending}, timeout=timeout)
        if not done:
            return None
        received, self.pending = self.pending, None
        return received.result()


def user_access_group(user_id):
    """Every socket of one user joins this group, so a change of their access reaches them."""
    return f"user-{user_id}-access"


def tell_user_sockets(user_id, message):
    future = asyncio.run_coroutine_threadsafe(
        get_channel_layer().group_send(user_access_group(user_id), message), _publish_loop()
    )
    try:
        future.result(timeout=PUBLISH_TIMEOUT_S)
    except Exception:
        logger.warning(
            "Could not send %s to user %s's sockets", message["type"], user_id, exc_info=True
        )


def access_changed(user_id):
    """Make the user's open sockets re-check their access (and close where it is gone)."""
    tell_user_sockets(user_id, {"type": ACCESS_CHANGED_MESSAGE_TYPE})


def session_ended(user_id, session_key):
    """Close the user's sockets opened in that (logged-out) session."""
    tell_user_sockets(user_id, {"type": SESSION_ENDED_MESSAGE_TYPE, "session_key": session_key})


def publish(group, payload):
    """Send payload (a JSON-able dict with a "type" such as "job.progress") to a group.

    Best effort: a lost event never fails the work it reports on, because browsers
    re-read the state over HTTP whenever their socket reconnects.
    """
    publish_all([(group, payload)])


def publish_all(messages):
    """publish() each (group, payload) of messages, with one wait for all of them."""
    if not messages:
        return
    future = asyncio.run_coroutine_threadsafe(apublish_all(messages), _publish_loop())
    try:
        future.result(timeout=PUBLISH_TIMEOUT_S)
    except Exception:
        logger.warning(
            "Could not publish %s to %s",
            ", ".join(sorted({payload.get("type") for _, payload in messages})),
            ", ".join(sorted({group for group, _ in messages})),
            exc_info=True,
        )
