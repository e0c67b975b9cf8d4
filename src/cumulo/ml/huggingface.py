"""Hugging Face models for the registry: a folder that ``save_pretrained`` wrote, or
``hf://ORG/NAME[@revision]`` downloaded from the Hub into its cache first.

The model is loaded as a transformers pipeline (which proves the weights and tokenizer load)
and logged with MLflow's transformers flavor, so ``mlflow.pyfunc.load_model`` serves it.
transformers, PyTorch and huggingface_hub are imported only here, and only when used.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from cumulo.errors import Forbidden, Invalid, NotFound, Unavailable

__all__ = ["HF_PREFIX", "download", "is_transformers_folder", "load", "log"]

HF_PREFIX = "hf://"
_INSTALL = "pip install 'cumulo[hf]'"
_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_WEIGHTS = ("*.safetensors", "pytorch_model*.bin")
# Weights for other frameworks than PyTorch, which Cumulo does not load: not worth downloading.
_OTHER_FRAMEWORKS = ["*.h5", "*.msgpack", "*.ot", "*.onnx", "*.onnx_data", "*.tflite",
                     "*.mlmodel", "onnx/*", "openvino/*", "coreml/*"]
# A model's task, read from the class save_pretrained recorded (config.json's architectures).
_TASK_BY_SUFFIX = (
    ("ForSequenceClassification", "text-classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForQuestionAnswering", "question-answering"),
    ("ForMaskedLM", "fill-mask"),
    ("ForCausalLM", "text-generation"),
    ("LMHeadModel", "text-generation"),
    ("ForImageClassification", "image-classification"),
    ("ForAudioClassification", "audio-classification"),
)
# ...ForConditionalGeneration is text-to-text only for these; for others it is speech or vision.
_TEXT_TO_TEXT = {"t5", "mt5", "umt5", "longt5", "bart", "mbart", "pegasus", "marian"}


def is_transformers_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file()


def download(url: str) -> tuple[Path, str]:
    """Fetch ``hf://ORG/NAME[@revision]`` (or a cached copy, offline); return its folder and
    ``hf://ORG/NAME@<commit>``, the exact version fetched."""
    repo, at, revision = url.removeprefix(HF_PREFIX).partition("@")
    if not _REPO.match(repo) or (at and not revision.strip()):
        raise Invalid(f"{url!r} is not of the form hf://ORG/NAME or hf://ORG/NAME@REVISION")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            GatedRepoError,
            HfHubHTTPError,
            LocalEntryNotFoundError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError as exc:
        raise Unavailable(f"importing from the Hugging Face Hub needs huggingface_hub: "
                          f"{_INSTALL}") from exc
    try:
        folder = Path(snapshot_download(repo, revision=revision or None,
                                        ignore_patterns=_OTHER_FRAMEWORKS))
    except LocalEntryNotFoundError as exc:
        why = ("HF_HUB_OFFLINE is set" if isinstance(exc.__cause__, OfflineModeIsEnabled)
               else "the Hugging Face Hub could not be reached")
        raise Unavailable(
            f"{why} and {repo} is not in the local Hugging Face cache. Download it where the "
            f"Hub can be reached ('hf download {repo} --local-dir DIR'), bring the folder here "
            "and import the folder instead") from exc
    except GatedRepoError as exc:
        raise Forbidden(f"{url} is gated: accept its terms on huggingface.co and set HF_TOKEN "
                        "to a token of that account") from exc
    except RepositoryNotFoundError as exc:
        raise NotFound(f"{url}: no such model on the Hugging Face Hub (a private one needs "
                       "HF_TOKEN)") from exc
    except RevisionNotFoundError as exc:
        raise NotFound(f"{url}: {repo} has no revision {revision!r}") from exc
    except (HfHubHTTPError, OSError) as exc:
        raise Unavailable(f"downloading {url} from the Hugging Face Hub failed: {exc}") from exc
    commit = folder.name if folder.parent.name == "snapshots" else revision or "main"
    return folder, f"{HF_PREFIX}{repo}@{commit}"


def _config(folder: Path) -> dict[str, Any]:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise Invalid(f"{folder / 'config.json'} is not readable JSON: {exc}") from exc
    if not isinstance(config, dict) or not config.get("model_type"):
        raise Invalid(f"{folder / 'config.json'} has no model_type: not a transformers model "
                      "folder (save_pretrained makes one), nor an MLflow one (no MLmodel file)")
    if not any(any(folder.glob(pattern)) for pattern in _WEIGHTS):
        raise Invalid(f"{folder} has a config.json but no PyTorch weights (model.safetensors "
                      "or pytorch_model.bin): save the model there with save_pretrained")
    return config


def _card(folder: Path) -> Any:
    """The model card (README.md, which the Hub's snapshots hold), or None."""
    if not (folder / "README.md").is_file():
        return None
    from huggingface_hub import ModelCard

    try:
        return ModelCard.load(folder / "README.md", ignore_metadata_errors=True)
    except Exception:  # a card is documentation: a malformed one must not stop the import
        return None


def _infer_task(config: dict[str, Any], card: Any) -> str | None:
    """The pipeline task: the card's ``pipeline_tag``, else the one its class is made for."""
    tag = card.data.to_dict().get("pipeline_tag") if card is not None else None
    if isinstance(tag, str) and tag:
        return tag
    for architecture in config.get("architectures") or []:
        for suffix, task in _TASK_BY_SUFFIX:
            if architecture.endswith(suffix):
                return task
        if (architecture.endswith("ForConditionalGeneration")
                and config.get("model_type") in _TEXT_TO_TEXT):
            return "text2text-generation"
    return None


def load(folder: Path, *, task: str | None = None) -> tuple[Any, Any]:
    """Load the folder as a pipeline for ``task`` (inferred when None); return it and its card."""
    config = _config(folder)
    try:
        import torch  # noqa: F401
        from transformers import pipeline
        from transformers.pipelines import check_task, get_supported_tasks
    except ImportError as exc:
        raise Unavailable(f"importing a Hugging Face model needs transformers and PyTorch: "
                          f"{_INSTALL}") from exc
    card = _card(folder)
    if task is None:
        task = _infer_task(config, card)
        if task is None:
            found = ", ".join(config.get("architectures") or []) or "no architectures"
            raise Invalid(f"cannot tell which pipeline task {folder} is for (its config.json "
                          f"names {found}): name one with --task (task= in the SDK), e.g. "
                          "text-classification or text-generation")
    try:
        check_task(task)  # also takes the parametrized ones, e.g. translation_en_to_fr
    except KeyError as exc:
        raise Invalid(f"task {task!r} is not a transformers pipeline task; it is one of "
                      f"{', '.join(get_supported_tasks())}") from exc
    try:
        # dtype="auto" keeps the checkpoint's precision: a float16 model stays half the size.
        # (transformers types pipeline() for literal task names only, hence the ignore.)
        pipe = pipeline(task, model=str(folder), dtype="auto")  # type: ignore[call-overload]
    except Exception as exc:  # anything the folder's contents make transformers raise
        raise Invalid(f"{folder} could not be loaded as a transformers {task} pipeline: "
                      f"{type(exc).__name__}: {exc}") from exc
    return pipe, card


def log(pipe: Any, card: Any) -> None:
    """Log the pipeline to the active run as ``model``, with MLflow's transformers flavor."""
    import mlflow
    import torch
    import transformers

    # Pinned here: MLflow's own guess asks for torchvision, which a text model does not need,
    # and would keep torch's local label (+cpu), which pip cannot install from PyPI.
    requirements = [f"transformers=={transformers.__version__}",
                    f"torch=={torch.__version__.split('+')[0]}"]
    mlflow.transformers.log_model(pipe, name="model", model_card=card,
                                  pip_requirements=requirements)
