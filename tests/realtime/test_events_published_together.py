"""Events published together (studio.realtime.events.publish_all, as a worker's progress
report publishes its jobs' steps) go out as one channel-layer message per group, and each
of them still reaches the group's sockets as an event of its own, in order, and no other
group's."""

import asyncio
from unittest import mock

import pytest
from channels.layers import get_channel_layer

from studio.realtime import events
from tests.realtime.test_project_events_socket import connect, make_member_project

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def group_sends():
    """(group, number of payloads) of every channel-layer send."""
    layer = get_channel_layer()
    real_send = layer.group_send
    sends = []

    async def counted(group, message):
        sends.append((group, len(message["payloads"])))
        await real_send(group, message)

    with mock.patch.object(layer, "group_send", counted):
        yield sends


@pytest.fixture
def two_users(db):
    return make_member_project("ann"), make_member_project("ben")


async def test_one_send_per_group_and_every_event_reaches_its_sockets(two_users, group_sends):
    (ann, ann_project), (ben, ben_project) = two_users
    ann_socket, _, _ = await connect(ann, ann_project)
    ben_socket, connected, _ = await connect(ben, ben_project)
    assert connected
    ann_events = [{"type": "job.progress", "job_id": job_id, "step": 3} for job_id in range(8)]
    ben_events = [{"type": "job.progress", "job_id": job_id, "step": 1} for job_id in (8, 9)]
    messages = [(ann_project.events_group(), event) for event in ann_events[:5]]
    messages += [(ben_project.events_group(), event) for event in ben_events]
    messages += [(ann_project.events_group(), event) for event in ann_events[5:]]

    await asyncio.to_thread(events.publish_all, messages)  # from a worker's thread

    assert sorted(group_sends) == sorted(
        [(ann_project.events_group(), 8), (ben_project.events_group(), 2)]
    )
    assert [await ann_socket.receive_json_from(timeout=2) for _ in ann_events] == ann_events
    assert [await ben_socket.receive_json_from(timeout=2) for _ in ben_events] == ben_events
    assert await ann_socket.receive_nothing(timeout=0.2)
    assert await ben_socket.receive_nothing(timeout=0.2)
    await ann_socket.disconnect()
    await ben_socket.disconnect()


async def test_a_failed_send_is_logged_and_fails_nothing(db, caplog):
    layer = get_channel_layer()
    with mock.patch.object(layer, "group_send", side_effect=ConnectionError("Redis went away")):
        await asyncio.to_thread(
            events.publish_all, [("project-1", {"type": "job.progress", "job_id": 1})]
        )
    assert "Could not publish job.progress to project-1" in caplog.text
