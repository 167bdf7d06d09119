"""Textual-inversion embeddings: upload into a team's library (the LoRA upload rules),
delete, and the embeddings a job's prompts name."""

from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files import File
from django.db import IntegrityError, transaction

from generation.loras.embeddings.files import EmbeddingFileError, read_embedding_file
from generation.loras.embeddings.models import EMBEDDING_NAME_RE, Embedding
from generation.loras.services import format_bytes, hashed_upload, lora_local_path
from studio.permissions import can
from studio.storage import files_delete_on_rollback


def embedding_name_error(name):
    """Why `name` can't call up an embedding in a prompt, or None."""
    if not name:
        return "Give the embedding a name: the word that calls it up in a prompt."
    if not EMBEDDING_NAME_RE.fullmatch(name):
        return (
            f"“{name}” is not one word: use letters, digits, “_” and “-” only, as it is "
            "written in a prompt."
        )
    return None


def embedding_create(*, team, user, upload, name=""):
    """Check an uploaded file and add it to the team's embeddings, or a ValidationError
    (its code: the form field it is about) that says why not."""
    if not can(user, "manage_loras", team):
        raise PermissionDenied("Only the team's editors add embeddings.")
    upload = hashed_upload(upload)
    file_name = Path(upload.name or "").name
    limit = settings.STUDIO_MAX_LORA_BYTES
    if getattr(upload, "too_big", False) or upload.size > limit:
        raise ValidationError(
            f"{file_name} is over {format_bytes(limit)}; embeddings are a few kilobytes.",
            code="file",
        )
    try:
        info = read_embedding_file(upload.temporary_file_path(), file_name)
    except EmbeddingFileError as error:
        raise ValidationError(str(error), code="file") from error
    existing = Embedding.objects.filter(team=team, sha256=upload.sha256).first()
    if existing is not None:
        raise ValidationError(
            f"{file_name} is already in {team.name}'s embeddings as “{existing.name}”.",
            code="file",
        )
    name = (name or "").strip() or Path(file_name).stem
    error = embedding_name_error(name)
    if error:
        raise ValidationError(error, code="name")
    if Embedding.objects.filter(team=team, name__iexact=name).exists():
        raise ValidationError(
            f"“{name}” is already an embedding of {team.name}: choose another name.", code="name"
        )
    embedding = Embedding(
        team=team,
        name=name,
        sha256=upload.sha256,
        size_bytes=upload.size,
        family=info.family,
        layout=info.layout,
        vectors=info.vectors,
        created_by=user,
    )
    upload.seek(0)
    try:
        with files_delete_on_rollback(embedding.file.storage) as written, transaction.atomic():
            embedding.file.save(f"{name}.safetensors", File(upload), save=False)
            written.append(embedding.file.name)
            embedding.save()
    except IntegrityError as error:  # the same name or file, added at the same moment
        raise ValidationError(
            f"“{name}” was just added to {team.name}'s embeddings.", code="name"
        ) from error
    return embedding


def embedding_delete(*, embedding, user):
    if not can(user, "manage_loras", embedding.team):
        raise PermissionDenied("Only the team's editors delete embeddings.")
    embedding.delete()
    embedding.file.delete(save=False)


def job_embeddings(job):
    """The team's embeddings of the job's model family that its prompts name."""
    return Embedding.objects.for_team(job.project.team).filter(family=job.model.family).named_in(
        job.prompt, job.negative_prompt
    )


def job_embedding_refs(job):
    """The job's embeddings as gpu_workers takes them."""
    from gpu_workers.requests import EmbeddingRef

    return tuple(
        EmbeddingRef(sha256=used.sha256, source=lora_local_path(used), name=used.name)
        for used in job_embeddings(job)
    )


def ti_hashes(embeddings):
    """A1111's "TI hashes" value: `name: hash` pairs."""
    return ", ".join(f"{used.name}: {used.short_hash()}" for used in embeddings) or None
