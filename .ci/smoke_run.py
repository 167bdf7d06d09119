"""Smoke test of `make run`: wait for the server, sign in as the printed demo user,
submit a job, wait for its image and fetch it."""

import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.e2e.http import StudioClient  # noqa: E402


def main(base_url, log_path):
    log = Path(log_path)
    deadline = time.monotonic() + 900
    client = StudioClient(base_url)
    while True:
        match = re.search(r"Demo login: username '(\w+)', password '([^']+)'", log.read_text())
        try:
            if match:
                client.get("/login/")
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            sys.exit(f"make run did not come up:\n{log.read_text()}")
        time.sleep(1)
    client.log_in(match.group(1), match.group(2))
    _, page = client.get("/")
    project_path = re.search(rb'href="(/projects/\d+/)"', page).group(1).decode()
    _, studio = client.get(project_path)
    # The model menu's selected option (options may carry more attributes after it).
    model_select = re.search(rb'<select name="model".*?</select>', studio, re.DOTALL).group(0)
    model_id = re.search(rb'<option value="(\d+)" selected', model_select).group(1).decode()
    status, body = client.post(
        project_path + "generate/",
        {"prompt": "smoke test: a red bicycle", "model": model_id, "steps": 8,
         "guidance_scale": 7, "width": 128, "height": 128},
        headers={"HX-Request": "true"},
    )
    job_id = re.search(rb'data-job-id="(\d+)"', body).group(1).decode()
    print(f"submitted job {job_id}")
    while time.monotonic() < deadline:
        state = client.get_json(f"/jobs/{job_id}/")
        if state["status"] in ("finished", "failed", "canceled"):
            break
        time.sleep(0.5)
    if state["status"] != "finished":
        sys.exit(f"job ended {state['status']}: {state.get('error')}\n{log.read_text()}")
    status, png = client.get(state["images"][0]["url"])
    assert status == 200 and png.startswith(b"\x89PNG"), "image not served"
    print(f"job {job_id} finished; image {state['images'][0]['id']} is {len(png)} bytes")


if __name__ == "__main__":
    main(*sys.argv[1:])
