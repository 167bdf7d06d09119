"""Event names live in one module (studio/realtime/event_types.py): Python publishes its
members, never a name written out, and the pages' scripts read the same names from a JSON
data block the server renders, so a name the module lacks fails here, not in a browser."""

import ast
import json
import re
from pathlib import Path

from django.urls import reverse

from generation.models import JobStatus
from studio.realtime.event_types import JOB_STATUS_EVENT_TYPES, EventType
from tests.base import StudioTestCase
from tests.subject_builders import make_run, make_subject

ROOT = Path(__file__).resolve().parents[2]
PYTHON_DIRS = ("generation", "gallery", "studio")
NAMES = {member.value for member in EventType}
# What an event name looks like: one of the module's prefixes, a dot, a word ("job.queued").
PREFIXES = "|".join(sorted({name.split(".")[0] for name in NAMES}))
EVENT_NAME = re.compile(rf"^({PREFIXES})\.[a-z_]+$")


def python_files():
    for folder in PYTHON_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path


def type_values(tree):
    """Every value given as an event's type: `type=` arguments and `"type":` dict entries."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield from (kw.value for kw in node.keywords if kw.arg == "type")
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "type":
                    yield value


def type_problems(path):
    """(line, problem) for every event type in the file not taken from EventType."""
    tree = ast.parse(path.read_text(), filename=str(path))
    problems = []
    for value in type_values(tree):
        if isinstance(value, ast.JoinedStr):
            problems.append((value.lineno, "an f-string type: use an EventType member"))
        elif isinstance(value, ast.Constant) and isinstance(value.value, str):
            if value.value in NAMES:
                member = EventType(value.value).name
                problems.append((value.lineno, f"{value.value!r} written out: use {member}"))
            elif EVENT_NAME.match(value.value):
                problems.append((value.lineno, f"{value.value!r} is no EventType"))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "EventType"
            and node.attr not in EventType.__members__
        ):
            problems.append((node.lineno, f"EventType.{node.attr} is no EventType"))
    return problems


def script_files():
    return sorted(path for path in (ROOT / "static" / "js").glob("*.js"))


def test_python_publishes_only_event_types_of_the_module():
    problems = [
        f"{path.relative_to(ROOT)}:{line}: {problem}"
        for path in python_files()
        for line, problem in type_problems(path)
    ]
    assert problems == []


def test_the_check_catches_a_type_written_out_or_unknown(tmp_path):
    source = tmp_path / "publisher.py"
    source.write_text(
        "publish(group, job.event_payload(type='job.queued'))\n"
        "publish(group, {'type': 'job.paused', 'job_id': 1})\n"
        "publish(group, run.event_payload(type=f'{kind}.failed'))\n"
        "publish(group, job.event_payload(type=EventType.JOB_PAUSED))\n"
        "publish(group, job.event_payload(type=EventType.JOB_QUEUED))\n"
        "forms.DateInput(attrs={'type': 'date'})\n"
    )
    assert [line for line, _ in type_problems(source)] == [1, 2, 3, 4]


def test_scripts_write_no_event_name_and_read_only_names_of_the_module():
    literals, unknown = [], []
    for path in script_files():
        text = path.read_text()
        for match in re.finditer(r"""(["'`])([a-z_]+\.[a-z_]+)\1""", text):
            if EVENT_NAME.match(match.group(2)):
                literals.append(f"{path.name}: {match.group(0)}")
        for name in re.findall(r"\bEVENT\.([A-Za-z_]+)", text):
            if name not in EventType.__members__:
                unknown.append(f"{path.name}: EVENT.{name}")
    assert literals == []
    assert unknown == []


def test_scripts_that_read_event_names_are_the_ones_the_pages_give_them_to():
    readers = {path.name for path in script_files() if "EVENT." in path.read_text()}
    assert readers == {"studio.js", "training.js"}


def test_every_job_status_has_its_type_in_the_http_state():
    assert set(JOB_STATUS_EVENT_TYPES) == set(JobStatus.values)
    assert {str(name) for name in JOB_STATUS_EVENT_TYPES.values()} == {
        f"job.{status}" for status in JobStatus.values
    }


class EventTypesDataBlockTests(StudioTestCase):
    """The pages whose scripts listen render every name as a JSON data block; the CSP lets
    it through because it never runs (no inline script is allowed)."""

    def event_types_on(self, url):
        self.client.force_login(self.editor)
        response = self.client.get(url)
        self.assertEqual(response.status_code, 200)
        html = response.content.decode()
        block = re.search(
            r'<script id="event-types" type="application/json">(.*?)</script>', html, re.S
        )
        self.assertIsNotNone(block, "no event-types data block")
        self.assertNotIn("'unsafe-inline'", response["Content-Security-Policy"])
        return json.loads(block.group(1))

    def test_the_studio_page_gives_its_script_every_event_name(self):
        names = self.event_types_on(reverse("project_studio", args=[self.project.pk]))
        self.assertEqual(names, {member.name: member.value for member in EventType})

    def test_a_training_run_page_gives_its_script_every_event_name(self):
        run = make_run(make_subject(self.team, self.editor), self.project, self.editor, self.model)
        names = self.event_types_on(reverse("training_detail", args=[run.pk]))
        self.assertEqual(names["TRAINING_PROGRESS"], "training.progress")
        self.assertEqual(names, {member.name: member.value for member in EventType})

    def test_an_outsider_gets_no_page_and_no_names(self):
        self.client.force_login(self.outsider)
        response = self.client.get(reverse("project_studio", args=[self.project.pk]))
        self.assertEqual(response.status_code, 404)
        self.assertNotIn(b"event-types", response.content)
