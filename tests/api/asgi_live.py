"""The studio's HTTP application served by uvicorn in a thread of the test process, for
tests of streams (server-sent events): real HTTP, the server's loop the one that the
in-memory channel layer delivers on, and the test's mocks in force in the server."""

import threading
import time

import uvicorn
from django.core.asgi import get_asgi_application

START_TIMEOUT_S = 10


class AsgiServer:
    def __init__(self):
        config = uvicorn.Config(
            get_asgi_application(), host="127.0.0.1", port=0, lifespan="off",
            log_level="warning", timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="asgi-test-server",
                                       daemon=True)

    def start(self):
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self):
        self.server.should_exit = True
        self.thread.join(START_TIMEOUT_S)
