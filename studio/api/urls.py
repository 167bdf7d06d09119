from django.urls import path
from django.views.generic import RedirectView

from studio.api import views
from studio.api.api import api
from studio.api.openai_images import openai_api
from studio.api.sdapi import sdapi

urlpatterns = [
    path("account/tokens/", views.token_list, name="api_tokens"),
    path("account/tokens/<int:token_id>/revoke/", views.token_revoke_view, name="api_token_revoke"),
    path("api/v1/", api.urls),
    # The addresses the issue and other tools' users look for first: the current version's.
    path("api/openapi.json", RedirectView.as_view(url="/api/v1/openapi.json")),
    path("api/docs/", RedirectView.as_view(url="/api/v1/docs")),
    path("sdapi/v1/", sdapi.urls),
    path("v1/", openai_api.urls),
]
