from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("studio.ops.urls")),
    path("", include("studio.accounts.urls")),
    path("", include("generation.urls")),
    path("", include("studio.moderation.urls")),
    path("", include("generation.library.urls")),
    path("", include("generation.loras.urls")),
    path("", include("generation.loras.embeddings.urls")),
    path("", include("generation.wildcards.urls")),
    path("", include("generation.styles.urls")),
    path("", include("generation.training.urls")),
    path("", include("studio.moderation.public_loras.urls")),
    path("", include("gallery.urls")),
    path("", include("studio.quotas.urls")),
    path("", include("studio.api.urls")),
]

# 404 and 403 are Django's handlers with templates/404.html and 403.html.
handler500 = "studio.errors.server_error"
