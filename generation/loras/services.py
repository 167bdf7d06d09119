"""LoRA workflows: uploads into a team's library (streamed, hashed, header-checked, stored
under a server-chosen name), edits and deletes, and the LoRA stack of a job (picked in the
form and/or written as <lora:name:weight> in the prompt), checked and recorded."""

import hashlib
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files import File
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.db import IntegrityError, transaction

from generation.loras.files import (
    SHA256_HEX,
    LoraFileError,
    addnet_hash,
    read_lora_file,
    refuse_by_name,
)
from generation.loras.models import (
    LORA_NAME_FORBIDDEN,
    JobLora,
    Lora,
    format_weight,
    lora_name_refusal,
)
from generation.loras.syntax import LoraSyntaxError, check_weight, parse_lora_tags
from generation.models import ModelFamily
from studio.permissions import can
from studio.storage import files_delete_on_rollback

logger = logging.getLogger(__name__)

_CHUNK = 1024 * 1024


# -- Uploads ------------------------------------------------------------------------------


def format_bytes(size):
    """1.0 GB for 1024**3 bytes, as file managers count."""
    if size < 1024:
        return f"{size:,} bytes"
    for unit in ("KB", "MB", "GB", "TB"):
        size /= 1024
        if size < 1024 or unit == "TB":
            return f"{size:.1f} {unit}"


class LoraUploadHandler(FileUploadHandler):
    """Streams the `file` field to a temporary file, hashing it as it comes. Past the size
    cap it stops writing (the upload is refused by its size, never stored whole); other
    file fields are dropped."""

    field_name = "file"

    def __init__(self, request, limit):
        super().__init__(request)
        self.limit = limit
        self.upload = None

    def new_file(self, field_name, file_name, content_type, content_length, charset=None,
                 content_type_extra=None):
        super().new_file(field_name, file_name, content_type, content_length, charset,
                         content_type_extra)
        self.active = field_name == self.field_name and self.upload is None
        if self.active:
            self.upload = TemporaryUploadedFile(file_name, content_type, 0, charset,
                                                content_type_extra)
            self.digest = hashlib.sha256()
            self.received = 0

    def receive_data_chunk(self, raw_data, start):
        if self.active:
            self.received += len(raw_data)
            if self.received <= self.limit:
                self.digest.update(raw_data)
                self.upload.write(raw_data)
        return None

    def file_complete(self, file_size):
        if not self.active:
            return None
        self.active = False
        self.upload.seek(0)
        self.upload.size = self.received
        self.upload.sha256 = self.digest.hexdigest()
        self.upload.too_big = self.received > self.limit
        return self.upload


def hashed_upload(upload):
    """The upload as a temporary file on local disk with its `sha256`: LoraUploadHandler's
    file as it is, any other upload streamed into one and hashed on the way."""
    if hasattr(upload, "sha256") and hasattr(upload, "temporary_file_path"):
        return upload
    copy = TemporaryUploadedFile(upload.name, upload.content_type, 0, None)
    digest, size = hashlib.sha256(), 0
    upload.seek(0)
    for chunk in upload.chunks(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
        copy.write(chunk)
    copy.flush()
    copy.seek(0)
    copy.size, copy.sha256, copy.too_big = size, digest.hexdigest(), False
    return copy


@dataclass
class CheckedUpload:
    """An upload that passed every check: where it is, its hash and what its header says."""

    path: str
    file_name: str
    sha256: str
    size: int
    info: object  # lora_files.LoraInfo
    upload: object  # the temporary file: removed once closed (or collected)


def check_lora_upload(*, team, upload):
    """A CheckedUpload, or a ValidationError that says why the file is refused."""
    upload = hashed_upload(upload)
    path, sha256, size = upload.temporary_file_path(), upload.sha256, upload.size
    file_name = Path(upload.name or "").name
    try:
        refuse_by_name(file_name)
    except LoraFileError as error:
        raise ValidationError(str(error), code="extension") from error
    limit = settings.STUDIO_MAX_LORA_BYTES
    if getattr(upload, "too_big", False) or size > limit:
        raise ValidationError(
            f"{file_name} is {'over ' if getattr(upload, 'too_big', False) else ''}"
            f"{format_bytes(max(size, upload.size or 0))}; LoRAs up to {format_bytes(limit)} "
            "are accepted. A file this large is probably a full checkpoint, not a LoRA.",
            code="too_big",
        )
    try:
        info = read_lora_file(path, file_name)
    except LoraFileError as error:
        raise ValidationError(str(error), code="invalid") from error
    existing = Lora.objects.filter(team=team, sha256=sha256).first()
    if existing is not None:
        raise ValidationError(
            f"{file_name} is already in {team.name}'s library as “{existing.name}” (the same "
            "file, by its SHA-256).",
            code="duplicate",
        )
    return CheckedUpload(
        path=path, file_name=file_name, sha256=sha256, size=size, info=info, upload=upload
    )


def clean_lora_name(name):
    """A name the prompt syntax can call, or a ValidationError."""
    name = " ".join((name or "").split())
    if not name:
        raise ValidationError("Give the LoRA a name: the prompt calls it <lora:name:weight>.")
    refusal = lora_name_refusal(name)
    if refusal:
        raise ValidationError(refusal)
    return name[:100]


def name_from_file(checked):
    """A name for a LoRA from its metadata's title or its file name."""
    raw = checked.info.title or Path(checked.file_name).stem
    cleaned = re.sub(rf"[{re.escape(LORA_NAME_FORBIDDEN)}]", "_", " ".join(raw.split()))
    return cleaned[:100] or "lora"


def unused_name(team, name):
    """`name`, or `name-2`, `name-3`, ... the first not taken in the team's library."""
    taken = {
        existing.lower()
        for existing in Lora.objects.filter(team=team, name__istartswith=name[:90])
        .values_list("name", flat=True)
    }
    candidate, n = name, 1
    while candidate.lower() in taken:
        n += 1
        candidate = f"{name[:90]}-{n}"
    return candidate


def name_taken(team, name, exclude=None):
    found = Lora.objects.filter(team=team, name__iexact=name)
    if exclude is not None:
        found = found.exclude(pk=exclude.pk)
    return found.exists()


def lora_create(*, team, user, checked, name="", description="", family="",
                default_weight=1.0, trigger_words=None):
    """A library entry for a checked upload, its file stored under a server-chosen name."""
    if not can(user, "manage_loras", team):
        raise PermissionDenied("Only the team's editors may add LoRAs.")
    info = checked.info
    family = family or info.family
    if not family:
        raise ValidationError(
            "The file does not say which base model it was made for: choose the base family.",
            code="family",
        )
    if info.family_is_certain and family != info.family:
        raise ValidationError(
            f"This LoRA is made for {ModelFamily(info.family).label} ({info.family_evidence}), "
            f"not {ModelFamily(family).label}: choose “{ModelFamily(info.family).label}”.",
            code="family",
        )
    name = clean_lora_name(name) if name else unused_name(team, name_from_file(checked))
    if name_taken(team, name):
        raise ValidationError(
            f"A LoRA named “{name}” is already in {team.name}'s library: choose another name.",
            code="name",
        )
    if trigger_words is None:
        trigger_words = ", ".join(info.trigger_words)
    lora = Lora(
        team=team,
        name=name,
        description=description,
        sha256=checked.sha256,
        addnet_hash=info.addnet_hash,
        size_bytes=checked.size,
        family=family,
        layout=info.layout,
        rank=info.rank,
        alpha=info.alpha,
        trigger_words=trigger_words[:500],
        resolution=info.resolution,
        base_model=info.base_model,
        metadata=info.metadata,
        default_weight=default_weight,
        created_by=user,
    )
    # Written before the row's transaction, so a large file never holds its lock.
    with files_delete_on_rollback(lora.file.storage) as written:
        with open(checked.path, "rb") as opened:
            lora.file.save("lora.safetensors", File(opened), save=False)
        written.append(lora.file.name)
        try:
            with transaction.atomic():
                lora.save()
        except IntegrityError as error:  # a twin upload won the race
            raise ValidationError(
                "The same file or name was just added to the library by someone else.",
                code="duplicate",
            ) from error
    return lora


def lora_delete(*, lora, user):
    """Remove a LoRA from the library; jobs keep its name and hash, and its file goes once
    the deletion is committed."""
    if not can(user, "manage_loras", lora.team):
        raise PermissionDenied("Only the team's editors may delete LoRAs.")
    storage, name = lora.file.storage, lora.file.name
    lora.delete()
    transaction.on_commit(lambda: storage.delete(name))


# -- A job's LoRA stack -------------------------------------------------------------------


@dataclass(frozen=True)
class LoraChoice:
    """A LoRA a job will apply, at `weight`; `in_prompt`: written as a tag in the prompt."""

    lora: Lora
    weight: float
    in_prompt: bool = False


class LoraStackError(ValueError):
    """The stack can't run; `field` is the form field to blame ("loras" or "prompt")."""

    def __init__(self, message, field="loras"):
        super().__init__(message)
        self.field = field


def family_mismatch(lora, model):
    if lora.family == model.family:
        return None
    return (
        f"LoRA “{lora.name}” is made for {lora.get_family_display()}, but {model.name} is a "
        f"{model.get_family_display()} model: remove it or choose a "
        f"{lora.get_family_display()} model."
    )


def lora_stack(*, team, model, picked, prompt):
    """The LoRAs a job applies: those picked ([(lora id, weight or None)]) then those the
    prompt's <lora:name:weight> tags name, looked up in `team`'s library only (a LoRA of
    another team is unknown). A LoraStackError says what is wrong."""
    library = {lora.pk: lora for lora in Lora.objects.filter(team=team, pk__in=[
        lora_id for lora_id, _ in picked
    ])}
    stack = []
    for lora_id, weight in picked:
        lora = library.get(lora_id)
        if lora is None:
            raise LoraStackError(
                f"Unknown LoRA (#{lora_id}): pick one from {team.name}'s library."
            )
        weight = lora.default_weight if weight is None else weight
        try:
            check_weight(weight, lora.name)
        except LoraSyntaxError as error:
            raise LoraStackError(str(error)) from None
        stack.append(LoraChoice(lora=lora, weight=weight))
    try:
        tags = parse_lora_tags(prompt)
    except LoraSyntaxError as error:
        raise LoraStackError(str(error), field="prompt") from None
    for tag in tags:
        lora = Lora.objects.filter(team=team, name__iexact=tag.name).first()
        if lora is None:
            raise LoraStackError(
                f"Unknown LoRA “{tag.name}” in {tag.text}: no LoRA by that name in "
                f"{team.name}'s library. Check the spelling or upload it.",
                field="prompt",
            )
        stack.append(LoraChoice(lora=lora, weight=tag.weight, in_prompt=True))
    check_stack(stack, model)
    return stack


def check_stack(stack, model):
    """Count, duplicates and families; a LoraStackError blames the first problem."""
    limit = settings.STUDIO_MAX_LORAS_PER_JOB
    if len(stack) > limit:
        raise LoraStackError(
            f"{len(stack)} LoRAs are too many: a job stacks at most {limit}. Remove "
            f"{len(stack) - limit}.",
            field="prompt" if any(choice.in_prompt for choice in stack) else "loras",
        )
    seen = {}
    for choice in stack:
        where = "prompt" if choice.in_prompt else "loras"
        if choice.lora.pk in seen:
            places = {seen[choice.lora.pk], choice.in_prompt}
            how = "picked and written in the prompt" if len(places) == 2 else (
                "written twice in the prompt" if choice.in_prompt else "picked twice"
            )
            raise LoraStackError(
                f"LoRA “{choice.lora.name}” is {how}: use it once, with one weight.",
                field=where,
            )
        seen[choice.lora.pk] = choice.in_prompt
        if choice.lora.disabled_reason:
            raise LoraStackError(disabled_refusal(choice.lora), field=where)
        if model is not None:
            mismatch = family_mismatch(choice.lora, model)
            if mismatch:
                raise LoraStackError(mismatch, field=where)


def disabled_refusal(lora):
    return f"LoRA “{lora.name}” is disabled: {lora.disabled_reason}. Remove it from the job."


def lora_stack_refusal(*, project, model, loras):
    """Why the job can't apply `loras` (LoraChoice items) in `project`, or None."""
    for choice in loras:
        if choice.lora.team_id != project.team_id:
            return f"Unknown LoRA “{choice.lora.name}”: it is not in {project.team.name}'s library."
    try:
        check_stack(list(loras), model)
    except LoraStackError as error:
        return str(error)
    return None


def job_loras_record(*, job, loras):
    JobLora.objects.bulk_create(
        JobLora(
            job=job,
            lora=choice.lora,
            name=choice.lora.name,
            sha256=choice.lora.sha256,
            weight=choice.weight,
            position=position,
            in_prompt=choice.in_prompt,
        )
        for position, choice in enumerate(loras)
    )


class LoraGone(ValueError):
    pass


def job_lora_stack(job):
    """The job's LoRAs as LoraChoice items (to run it again), or LoraGone naming the one
    that left the library."""
    stack = []
    for used in job.job_loras.select_related("lora"):
        if used.lora is None or used.lora.sha256 != used.sha256:
            raise LoraGone(
                f"LoRA “{used.name}” is no longer in the library, so this job can't run again "
                "as it was. Duplicate it and choose other LoRAs."
            )
        stack.append(LoraChoice(lora=used.lora, weight=used.weight, in_prompt=used.in_prompt))
    return stack


# -- For the worker and the PNG -----------------------------------------------------------


def lora_local_path(lora):
    """A path the worker can open: the stored file itself on filesystem storage, else a
    copy in a local cache named by its SHA-256."""
    try:
        return lora.file.path
    except NotImplementedError:
        pass
    cache = Path(tempfile.gettempdir()) / "studio-lora-downloads"
    cache.mkdir(parents=True, exist_ok=True)
    local = cache / f"{lora.sha256}.safetensors"
    if not local.exists():
        part = cache / f"{lora.sha256}.{os.getpid()}.part"
        with lora.file.open("rb") as source, open(part, "wb") as copy:
            shutil.copyfileobj(source, copy, _CHUNK)
        part.replace(local)  # the worker checks the SHA-256 as it caches it
    return str(local)


def job_lora_refs(job):
    """The job's LoRAs as gpu_workers takes them (LoraRef, stacked in order)."""
    from gpu_workers.requests import GenerationFailed, LoraRef

    refs = []
    for used in job.job_loras.select_related("lora"):
        if used.lora is None or used.lora.sha256 != used.sha256:
            raise GenerationFailed(
                f"LoRA “{used.name}” was removed from the library before the job ran. "
                "Duplicate the job and choose another LoRA."
            )
        if used.lora.disabled_reason:  # disabled after the job was queued
            raise GenerationFailed(disabled_refusal(used.lora))
        refs.append(
            LoraRef(
                sha256=used.sha256,
                source=lora_local_path(used.lora),
                weight=used.weight,
                name=used.name,
            )
        )
    return tuple(refs)


def infotext_prompt(prompt, job_loras):
    """The prompt for A1111's infotext: as written, with a tag appended for each picked
    LoRA so A1111 (and an import here) applies them too."""
    tags = [
        f"<lora:{used.name}:{format_weight(used.weight)}>" for used in job_loras
        if not used.in_prompt
    ]
    return " ".join([prompt, *tags]) if tags else prompt


def lora_addnet_hash(*, lora):
    """The LoRA's A1111 hash, computed from its file and kept if it has none yet (added
    before it was kept)."""
    if not lora.addnet_hash:
        written = str(lora.metadata.get("sshs_model_hash", "")).strip().lower()
        if SHA256_HEX.fullmatch(written):
            lora.addnet_hash = written
        else:
            with lora.file.open("rb") as opened:
                lora.addnet_hash = addnet_hash(opened)
        Lora.objects.filter(pk=lora.pk).update(addnet_hash=lora.addnet_hash)
    return lora.addnet_hash


def lora_hashes(job_loras):
    """A1111's "Lora hashes" value: "name: hash, ...", each hash the first 12 hex digits
    of what A1111 and Civitai know the file by (lora_files.a1111_lora_hash); None: none."""
    if not job_loras:
        return None
    # A1111 takes ":" and "," out of names here: they would break the field apart.
    return ", ".join(
        f"{used.name.replace(':', '').replace(',', '')}: "
        f"{lora_addnet_hash(lora=used.lora)[:12] if used.lora else used.short_hash()}"
        for used in job_loras
    )
