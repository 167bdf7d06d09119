"""A failed job's or training run's message never shows a server path, and a full disk is
said plainly (issue #18)."""

import errno
import os

from django.core.exceptions import ValidationError

from generation import execution
from generation.training import execution as training_execution

FULL = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/srv/studio/media/images/3/a.png")


def test_a_full_disk_is_said_plainly_for_a_job():
    message = execution.failure_reason(FULL)
    assert message.startswith("The server's storage is full, so this job's images could not")
    assert "/" not in message


def test_a_full_disk_is_said_plainly_for_a_training_run():
    quota = OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), "/tmp/run/lora.safetensors")
    message = training_execution.failure_reason(quota)
    assert message.startswith("The server's storage is full, so the trained LoRA could not")
    assert "/" not in message


def test_a_full_disk_wrapped_by_a_library_is_recognised():
    try:
        try:
            raise FULL
        except OSError as error:
            raise RuntimeError("Error while serializing") from error
    except RuntimeError as wrapped:
        assert execution.failure_reason(wrapped).startswith("The server's storage is full")
    # safetensors (Rust) keeps only the words of the OSError.
    rust = RuntimeError('IoError(Os { code: 28, kind: StorageFull, message: "No space left '
                        'on device" })')
    assert training_execution.failure_reason(rust).startswith("The server's storage is full")


def test_an_os_error_says_what_happened_without_its_file():
    denied = PermissionError(errno.EACCES, "Permission denied", "/var/lib/studio/media/x.png")
    assert execution.failure_reason(denied) == (
        "The worker could not generate this image (PermissionError: Permission denied)."
    )


def test_absolute_paths_are_cut_to_their_last_part():
    missing = OSError("Error no file named model_index.json found in directory /models/sd 1.5"
                      " nor in '/home/ops/My Models/dream shaper'.")
    assert execution.failure_reason(missing) == (
        "The worker could not generate this image (OSError: Error no file named "
        "model_index.json found in directory …/sd 1.5 nor in …/dream shaper.)."
    )
    ratio = ValueError("step 1/2 and/or https://huggingface.co/org/model failed at /opt/x/y.py")
    assert training_execution.failure_reason(ratio) == (
        "The worker could not train this LoRA (ValueError: step 1/2 and/or "
        "https://huggingface.co/org/model failed at …/y.py)."
    )


def test_refusals_of_a_trained_file_lose_their_paths_too():
    refused = ValidationError("/tmp/train-3/lora.safetensors is cut short.")
    assert training_execution.failure_reason(refused) == "…/lora.safetensors is cut short."
