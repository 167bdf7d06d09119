"""The ControlNet edge-map preview: the canny edges the worker will condition on, computed
here with gpu_workers.control (numpy and Pillow only: web nodes never import torch)."""

import base64
import io

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.utils.html import format_html
from django.views.decorators.http import require_POST
from PIL import Image as PILImage

from gallery.models import Image
from generation.forms import MAX_SIDE, MIN_SIDE
from generation.views import project_for
from gpu_workers.control import (
    DEFAULT_HIGH_THRESHOLD,
    DEFAULT_LOW_THRESHOLD,
    MAX_THRESHOLD,
    control_image_from,
)
from studio.permissions import can
from studio.throttling import preview_rate_limited
from studio.uploads import UploadRejected, image_from_upload

# The preview is for judging thresholds: at most this many pixels a side.
PREVIEW_MAX_SIDE = 512


class ControlPreviewForm(forms.Form):
    control_image = forms.IntegerField(required=False)
    control_upload = forms.FileField(required=False)
    control_low_threshold = forms.IntegerField(required=False, min_value=0, max_value=MAX_THRESHOLD)
    control_high_threshold = forms.IntegerField(
        required=False, min_value=0, max_value=MAX_THRESHOLD
    )
    width = forms.IntegerField(required=False, min_value=MIN_SIDE, max_value=MAX_SIDE)
    height = forms.IntegerField(required=False, min_value=MIN_SIDE, max_value=MAX_SIDE)

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean(self):
        cleaned = super().clean()
        low = cleaned.get("control_low_threshold")
        high = cleaned.get("control_high_threshold")
        cleaned["control_low_threshold"] = DEFAULT_LOW_THRESHOLD if low is None else low
        cleaned["control_high_threshold"] = DEFAULT_HIGH_THRESHOLD if high is None else high
        if cleaned["control_low_threshold"] > cleaned["control_high_threshold"]:
            raise forms.ValidationError("The low threshold must not be above the high one.")
        upload, image_id = cleaned.get("control_upload"), cleaned.get("control_image")
        if upload:
            try:
                cleaned["source"] = image_from_upload(upload)
            except UploadRejected as error:
                raise forms.ValidationError(str(error)) from error
        elif image_id is not None:
            image = Image.objects.select_related("project__team").filter(pk=image_id).first()
            if image is None or not can(self.user, "view", image):
                raise forms.ValidationError("Unknown control image: pick one you may see.")
            with image.file.open("rb") as opened:
                cleaned["source"] = PILImage.open(opened).convert("RGB")
        else:
            raise forms.ValidationError("Choose a control image to preview its edges.")
        return cleaned


def preview_size(width, height, source):
    """The job's size if given (else the source's), scaled down to PREVIEW_MAX_SIDE."""
    width, height = width or source.width, height or source.height
    scale = min(1.0, PREVIEW_MAX_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


@login_required
@require_POST
@preview_rate_limited
def control_preview(request, project_id):
    """The edge map of the posted control image at the posted thresholds: a PNG, or for
    HTMX an <img> fragment holding it."""
    project_for(request.user, project_id, "view")
    form = ControlPreviewForm(request.POST, request.FILES, user=request.user)
    if not form.is_valid():
        message = " ".join(error for errors in form.errors.values() for error in errors)
        if request.htmx:
            return HttpResponse(format_html('<p class="field-error">{}</p>', message))
        return HttpResponse(message, status=422, content_type="text/plain")
    data = form.cleaned_data
    source = data["source"]
    edges = control_image_from(
        source,
        *preview_size(data.get("width"), data.get("height"), source),
        low_threshold=data["control_low_threshold"],
        high_threshold=data["control_high_threshold"],
    )
    buffer = io.BytesIO()
    edges.convert("L").save(buffer, format="PNG")
    png = buffer.getvalue()
    if not request.htmx:
        return HttpResponse(png, content_type="image/png")
    url = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return HttpResponse(
        format_html(
            '<img src="{}" alt="Canny edges at thresholds {} and {}" class="control-edges">',
            url,
            data["control_low_threshold"],
            data["control_high_threshold"],
        )
    )
