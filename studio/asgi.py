import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402  (needs Django set up)
from django.conf import settings  # noqa: E402

from gallery import dispatch as gallery_dispatch  # noqa: E402
from studio import embedded_worker  # noqa: E402
from studio.api.sockets import websocket_application  # noqa: E402
from studio.realtime.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": websocket_application(websocket_urlpatterns),
    }
)

if not settings.CELERY_BROKER_URL:
    # Embedded mode: the sweeper picks up what a previous run of the server left
    # unfinished, then keeps every queued job dispatched (generation.sweeper).
    embedded_worker.start_sweeper()
    gallery_dispatch.resume_purge()
