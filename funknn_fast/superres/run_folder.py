"""The output folder of a training run: what may be resumed, and what must not be overwritten.

A run folder holds ``checkpoint.json`` (``{"step": int, "train": TrainConfig fields, "model":
FunkNN config, ...}``), ``checkpoint.safetensors``, ``model.*`` and ``log.jsonl``
(``funknn_fast.superres.training``). :func:`prepare_run_folder` enforces the rules:

* a new run (no resume) refuses a folder that already holds a run, unless ``overwrite`` (then
  the old run's files are removed first);
* ``resume`` needs a checkpoint there, readable and complete;
* ``resume`` refuses a configuration that differs from the recorded one (other than
  :data:`FREE_FIELDS`, which do not change the trained model), unless ``allow_changes``.

Every problem is a :class:`RunFolderError` (a ``ValueError``) naming the file and the fields.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RUN_FILES = ("checkpoint.json", "checkpoint.safetensors", "model.json", "model.safetensors",
             "log.jsonl")
FREE_FIELDS = ("checkpoint_every", "log_every")


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked (the message names the file)."""


def read_checkpoint_info(out_dir: Path) -> dict[str, Any]:
    """``checkpoint.json`` of ``out_dir``, checked: a step >= 0 and the training config."""
    path = out_dir / "checkpoint.json"
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunFolderError(f"no checkpoint to resume from: {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunFolderError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(info, dict):
        raise RunFolderError(f"{path} must hold a JSON object, got {type(info).__name__}")
    step = info.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise RunFolderError(f"{path}: \"step\" must be an int >= 0, got {step!r}")
    if not isinstance(info.get("train"), dict):
        raise RunFolderError(f"{path}: \"train\" (the training config) is missing or not an "
                             "object")
    return info


def config_changes(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``name: recorded -> current`` for every field both hold that differs (not
    :data:`FREE_FIELDS`; fields added since the checkpoint was written are not compared)."""
    names = sorted((set(recorded) & set(current)) - set(FREE_FIELDS))
    return [f"{name}: {recorded.get(name)!r} -> {current.get(name)!r}" for name in names
            if recorded.get(name) != current.get(name)]


def prepare_run_folder(out_dir: Path, config: dict[str, Any], resume: bool,
                       allow_changes: bool = False, overwrite: bool = False
                       ) -> dict[str, Any] | None:
    """Checks ``out_dir`` for a run of ``config`` (see module docstring); returns the recorded
    checkpoint info when resuming, None for a new run."""
    existing = [name for name in RUN_FILES if (out_dir / name).exists()]
    if not resume:
        if existing and not overwrite:
            raise RunFolderError(
                f"{out_dir} already holds a training run ({', '.join(existing)}): resume it "
                "with --resume, or replace it with --overwrite")
        for name in existing:
            (out_dir / name).unlink(missing_ok=True)
        return None
    info = read_checkpoint_info(out_dir)
    changes = config_changes(info["train"], config)
    if changes and not allow_changes:
        raise RunFolderError(
            f"{out_dir / 'checkpoint.json'} was trained with other settings ("
            + "; ".join(changes) + "): resume with the recorded settings, or accept the "
            "changes with --allow-changes")
    return info
