"""The users of `make bench-load` (a locustfile; bench/load.py runs it): each logs
in, then browses the studio, its job list, galleries, image pages, prompt history and
Explore with 1-3 s of thought between clicks, and now and then submits a job.

The driver passes what the users need in BENCH_LOAD_WORLD (JSON): usernames, password,
project and team ids, image ids and a model id.
"""

import json
import os
import random

from locust import HttpUser, between, task

WORLD = json.loads(os.environ.get("BENCH_LOAD_WORLD", "{}"))


class StudioUser(HttpUser):
    wait_time = between(1, 3)

    def on_start(self):
        self.username = random.choice(WORLD["usernames"])
        self.client.get("/login/", name="log-in page")
        # The log-in alone (its answer is a redirect); the page it leads to is timed as
        # the dashboard.
        self.client.post(
            "/login/",
            {"username": self.username, "password": WORLD["password"]},
            headers={"X-CSRFToken": self.client.cookies.get("csrftoken", "")},
            name="log in", allow_redirects=False,
        )
        self.client.get("/", name="dashboard")

    def htmx(self):
        return {"HX-Request": "true"}

    @task(4)
    def studio(self):
        self.client.get(f"/projects/{WORLD['project']}/", name="studio")

    @task(6)
    def job_list(self):
        self.client.get(f"/projects/{WORLD['project']}/jobs/", headers=self.htmx(),
                        name="studio job list (HTMX)")

    @task(3)
    def project_gallery(self):
        self.client.get(f"/projects/{WORLD['project']}/gallery/", name="project gallery")

    @task(2)
    def team_gallery(self):
        self.client.get(f"/teams/{WORLD['team']}/gallery/", name="team gallery")

    @task(2)
    def team_search(self):
        self.client.get(f"/teams/{WORLD['team']}/gallery/", params={"q": "fox"},
                        headers=self.htmx(), name="team gallery search (HTMX)")

    @task(3)
    def image_page(self):
        self.client.get(f"/images/{random.choice(WORLD['images'])}/", name="image page")

    @task(2)
    def history(self):
        self.client.get(f"/projects/{WORLD['project']}/history/", name="project history")

    @task(2)
    def explore(self):
        self.client.get("/explore/", name="explore")

    @task(1)
    def generate(self):
        self.client.post(
            f"/projects/{WORLD['project']}/generate/",
            {"prompt": "a lighthouse at dusk, oil painting", "model": WORLD["model"],
             "steps": 20, "guidance_scale": 7.5, "width": 512, "height": 512, "seed": 1234},
            headers={**self.htmx(), "X-CSRFToken": self.client.cookies.get("csrftoken", "")},
            name="generate (HTMX)",
        )
