from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "studio.realtime"
    label = "realtime"
