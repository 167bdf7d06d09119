"""What the gallery tells the apps above it (moderation scans new images): they connect from
their AppConfig.ready(), so they import the gallery and never the other way round."""

from django.dispatch import Signal

# A job's image was stored, inside the job's transaction (its row is not committed yet):
# image=.
image_generated = Signal()
