"""Find the model, the precompiled artifact directory and the options in a KServe model directory.

KServe's storage initializer copies ``storageUri`` to ``/mnt/models``. What may be there:

- one model: a TorchScript file (``.pt``/``.pth``/``.ts``), a ``torch.export`` file (``.pt2``),
  an ONNX file, or a TF SavedModel directory (``saved_model.pb``), at the top or in a numbered
  version directory as TF Serving lays it out (the highest version wins);
- optionally a yellowstone artifact directory (any directory holding ``yellowstone.json``, as
  ``BoostedModel.save`` / ``yellowstone compile --out`` wrote it);
- optionally ``yellowstone.yaml``: ``inputs`` (``NAME:SHAPE[:DTYPE]`` strings or mappings, needed
  by TorchScript models; a ``-1`` or named dim stays dynamic, ``input_ids:-1xseq=1..256:int64``
  within its range: V2 metadata shows it as ``-1`` and a request outside the range is a 400),
  ``signature`` (SavedModel), ``examples`` (an ``.npz`` of real inputs,
  one array per input name: validation runs on them too, and random inputs are drawn like them,
  e.g. token ids in their range and attention masks over padding) and any
  :class:`yellowstone.BoostConfig` field. Relative paths (``examples``, ``calibration``) are
  relative to the model directory.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from yellowstone.errors import ConfigError, ModelLoadError
from yellowstone.serving import parse_specs, split_section
from yellowstone.spec import TensorSpec

ARTIFACT_MARKER = "yellowstone.json"
CONFIG_NAMES = ("yellowstone.yaml", "yellowstone.yml")
MODEL_SUFFIXES = {".onnx": "onnx", ".pt2": "torch.export", ".pt": "torchscript",
                  ".pth": "torchscript", ".ts": "torchscript", ".torchscript": "torchscript"}
PLUGIN_KEYS = ("inputs", "signature", "examples")

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelLayout:
    """What a model directory holds.

    Attributes:
        model_path: the model file, or the SavedModel directory.
        form: ``onnx``, ``torchscript``, ``torch.export`` or ``saved_model``.
        artifact_dir: a yellowstone artifact directory to load instead of compiling, or None.
        config_file: the ``yellowstone.yaml`` read, or None.
    """

    model_path: Path
    form: str
    artifact_dir: Path | None = None
    config_file: Path | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelOptions:
    """``yellowstone.yaml`` split into the plugin's keys and the BoostConfig fields."""

    inputs: tuple[TensorSpec, ...] = ()
    signature: str = "serving_default"
    examples: Path | None = None
    boost: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def _form(path: Path) -> str | None:
    if path.is_dir():
        return "saved_model" if (path / "saved_model.pb").is_file() else None
    return MODEL_SUFFIXES.get(path.suffix.lower())


def _scan(root: Path) -> tuple[list[Path], list[Path]]:
    """Return (model candidates, artifact directories) under ``root``."""
    models: list[Path] = []
    artifacts: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if ARTIFACT_MARKER in filenames and here != root:
            artifacts.append(here)
            dirnames[:] = []  # its files are compiled artifacts, not models
            continue
        if "saved_model.pb" in filenames:
            models.append(here)
            dirnames[:] = []  # variables/ and assets/ belong to the SavedModel
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        models += [here / f for f in sorted(filenames) if Path(f).suffix.lower() in MODEL_SUFFIXES]
    return models, artifacts


def _pick_version(models: list[Path], root: Path) -> list[Path]:
    """TF Serving layout: several ``<root>/<N>/`` SavedModels mean versions; keep the highest."""
    versions = [m for m in models if m.is_dir() and m.parent == root and m.name.isdigit()]
    if len(versions) > 1 and len(versions) == len(models):
        return [max(versions, key=lambda p: int(p.name))]
    return models


def resolve_layout(model_dir: str | Path, *, model_file: str | None = None,
                   artifact_dir: str | Path | None = None) -> ModelLayout:
    """Find the one model in ``model_dir`` (or ``model_file`` in it), its artifacts and options.

    Raises:
        ModelLoadError: the directory is missing, holds no model, or more than one without
            ``model_file`` to choose.
    """
    root = Path(model_dir)
    if not root.exists():
        raise ModelLoadError(f"model directory {root} does not exist")
    if root.is_file():
        models, artifacts = [root], list[Path]()
        root = root.parent
    else:
        models, artifacts = _scan(root)
        models = _pick_version(models, root)
    if model_file:
        chosen = Path(model_file)
        chosen = chosen if chosen.is_absolute() else root / chosen
        if not chosen.exists():
            raise ModelLoadError(f"--model_file {chosen} does not exist")
        models = [chosen]
    if not models:
        raise ModelLoadError(
            f"no model found in {root}: expected a TorchScript (.pt/.pth/.ts), torch.export "
            f"(.pt2) or ONNX (.onnx) file, or a TF SavedModel directory (saved_model.pb)")
    if len(models) > 1:
        names = ", ".join(str(m.relative_to(root)) for m in models)
        raise ModelLoadError(f"{root} holds several models ({names}); pick one with --model_file")
    form = _form(models[0])
    if form is None:
        raise ModelLoadError(f"{models[0]} is not a model this plugin reads")
    art: Path | None
    if artifact_dir is not None:
        given = Path(artifact_dir)
        art = given if given.is_absolute() else root / given
        if not (art / ARTIFACT_MARKER).is_file():
            raise ModelLoadError(f"--artifact_dir {art} holds no {ARTIFACT_MARKER}")
    elif len(artifacts) > 1:
        names = ", ".join(str(a.relative_to(root)) for a in artifacts)
        raise ModelLoadError(f"{root} holds several artifact directories ({names}); pick one "
                             f"with --artifact_dir")
    else:
        art = artifacts[0] if artifacts else None
    config = next((root / n for n in CONFIG_NAMES if (root / n).is_file()), None)
    return ModelLayout(model_path=models[0], form=form, artifact_dir=art, config_file=config)


def read_options(layout: ModelLayout) -> ModelOptions:
    """Read ``yellowstone.yaml``: the plugin's keys, and BoostConfig fields validated by name."""
    if layout.config_file is None:
        return ModelOptions()
    import yaml

    where = str(layout.config_file)
    try:
        data = yaml.safe_load(layout.config_file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {where}: {exc}") from exc
    section = split_section(data, PLUGIN_KEYS, where=where)
    here = layout.config_file.parent
    examples = section.plugin.get("examples")
    if examples is not None:
        examples = here / str(examples)
        if not examples.is_file():
            raise ConfigError(f"{where}: examples file {examples} does not exist")
    boost = dict(section.boost)
    if boost.get("calibration"):
        boost["calibration"] = str(here / str(boost["calibration"]))
    return ModelOptions(inputs=parse_specs(section.plugin.get("inputs"), where=f"{where}: inputs"),
                        signature=str(section.plugin.get("signature") or "serving_default"),
                        examples=examples, boost=boost)


def artifact_inputs(artifact_dir: Path | None) -> tuple[TensorSpec, ...]:
    """The input specs an artifact directory recorded (they name a TorchScript model's inputs).

    Read as the core reads the directory when it loads it: the manifest verified first, then
    ``yellowstone.json`` checked key by key. Whatever is wrong with it (unreadable, tampered,
    malformed), no specs come from it, with one WARNING naming the file: the core then finds
    the directory unusable too and builds the model here or serves it on its framework.
    """
    if artifact_dir is None:
        return ()
    from yellowstone.artifact_dir import ArtifactMeta
    from yellowstone.cache import verify_manifest

    try:
        verify_manifest(artifact_dir)
        meta = ArtifactMeta.read(artifact_dir)
        return tuple(TensorSpec.from_dict(d) for d in meta.inputs)
    except Exception as exc:  # noqa: BLE001 - any problem: no specs, never a crashed predictor
        logger.warning("%s: no input specs taken from it: %s: %s", artifact_dir / ARTIFACT_MARKER,
                       type(exc).__name__, exc)
        return ()
