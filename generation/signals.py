"""What generation tells the apps above it (quotas charge for GPU time): they connect from
their AppConfig.ready(), so they import generation and never the other way round."""

from django.dispatch import Signal

# An attempt ended a job (finished, failed or canceled), once: job=, passes= (each pass's
# GenerationResults; empty when it ended before its first).
job_ended = Signal()
# A training run ended (finished, failed or canceled), or was taken over: run_id=.
training_run_ended = Signal()
