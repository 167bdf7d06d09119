import asyncio
from functools import partial

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.core.cache import cache

from studio.accounts.models import Project
from studio.permissions import can
from studio.realtime import events

CLOSE_NOT_ALLOWED = 4404
CLOSE_TOO_MANY_SOCKETS = 4429
CLOSE_SIGNED_OUT = 4401


@database_sync_to_async
def visible_project(scope, project_id):
    """The project if the socket may see it now. A socket opened with an API token carries
    the token's check as scope["authorise"] (studio.api.sockets); others, the user's own."""
    authorise = scope.get("authorise") or partial(can, scope["user"])
    project = Project.objects.select_related("team").filter(pk=project_id).first()
    if project is None or not authorise("view", project):
        return None
    return project


async def socket_slot_claim(*, user_id, channel_name):
    """One of the user's STUDIO_SOCKETS_PER_USER slots in the shared cache (so the cap holds
    across web nodes), or None when all are taken. A slot lapses after
    STUDIO_SOCKET_SLOT_TTL_S unless its socket renews it, so a crashed node frees its own."""
    for number in range(settings.STUDIO_SOCKETS_PER_USER):
        key = f"sockets:user-{user_id}:{number}"
        if await cache.aadd(key, channel_name, timeout=settings.STUDIO_SOCKET_SLOT_TTL_S):
            return key
    return None


async def socket_slot_keep(*, key, channel_name):
    """Renew the slot while the socket is open (a third of its lifetime at a time)."""
    ttl = settings.STUDIO_SOCKET_SLOT_TTL_S
    while True:
        await asyncio.sleep(ttl / 3)
        if not await cache.atouch(key, ttl):
            await cache.aadd(key, channel_name, timeout=ttl)


async def socket_slot_release(*, key, channel_name):
    if await cache.aget(key) == channel_name:
        await cache.adelete(key)


class ProjectEventsConsumer(AsyncJsonWebsocketConsumer):
    """Streams a project's job and image events to the people who may see the project."""

    async def connect(self):
        project_id = self.scope["url_route"]["kwargs"]["project_id"]
        user = self.scope["user"]
        project = await visible_project(self.scope, project_id)
        if project is None:
            # Refuse before joining any group: outsiders never receive a single event.
            await self.close(code=CLOSE_NOT_ALLOWED)
            return
        self.slot = await socket_slot_claim(user_id=user.pk, channel_name=self.channel_name)
        if self.slot is None:
            await self.close(code=CLOSE_TOO_MANY_SOCKETS)
            return
        self.slot_keeper = asyncio.create_task(
            socket_slot_keep(key=self.slot, channel_name=self.channel_name)
        )
        events.bind_server_loop(asyncio.get_running_loop())
        self.project_id = project.pk
        self.groups_joined = [project.events_group(), events.user_access_group(user.pk)]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.leave()

    async def leave(self):
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined = []
        if getattr(self, "slot", None):
            self.slot_keeper.cancel()
            await socket_slot_release(key=self.slot, channel_name=self.channel_name)
            self.slot = None

    async def access_changed(self, message):
        # A member removed from the team must stop receiving events at once, not when
        # they next reload the page.
        if await visible_project(self.scope, self.project_id) is None:
            await self.leave()
            await self.close(code=CLOSE_NOT_ALLOWED)

    async def session_ended(self, message):
        # Logging out ends this browser's session: its sockets close with it.
        session = self.scope.get("session")
        if session is not None and session.session_key == message["session_key"]:
            await self.leave()
            await self.close(code=CLOSE_SIGNED_OUT)

    async def studio_event(self, message):
        for payload in message["payloads"]:
            await self.send_json(payload)
