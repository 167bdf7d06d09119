import asyncio

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from studio.accounts.models import Project
from studio.permissions import can
from studio.realtime import events

CLOSE_NOT_ALLOWED = 4404


@database_sync_to_async
def visible_project(user, project_id):
    project = Project.objects.select_related("team").filter(pk=project_id).first()
    if project is None or not can(user, "view", project):
        return None
    return project


class ProjectEventsConsumer(AsyncJsonWebsocketConsumer):
    """Streams a project's job and image events to the people who may see the project."""

    async def connect(self):
        project_id = self.scope["url_route"]["kwargs"]["project_id"]
        project = await visible_project(self.scope["user"], project_id)
        if project is None:
            # Refuse before joining any group: outsiders never receive a single event.
            await self.close(code=CLOSE_NOT_ALLOWED)
            return
        events.bind_server_loop(asyncio.get_running_loop())
        self.project_id = project.pk
        self.groups_joined = [
            project.events_group(),
            events.user_access_group(self.scope["user"].pk),
        ]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.leave_groups()

    async def leave_groups(self):
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined = []

    async def access_changed(self, message):
        # A member removed from the team must stop receiving events at once, not when
        # they next reload the page.
        if await visible_project(self.scope["user"], self.project_id) is None:
            await self.leave_groups()
            await self.close(code=CLOSE_NOT_ALLOWED)

    async def studio_event(self, message):
        await self.send_json(message["payload"])
