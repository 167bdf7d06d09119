from django.urls import path

from gallery.explore import views as explore_views

urlpatterns = [
    path("explore/", explore_views.explore_page, name="explore"),
]
