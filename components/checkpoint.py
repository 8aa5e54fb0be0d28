"""Training checkpoints: written atomically, loaded with weights_only=True, rebuild the same model."""

from __future__ import annotations

import os
import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from components.config import ConfigError
from components.error_summary import first_line

LAST = "last.pt"
BEST = "best.pt"


@dataclass
class TrainState:
    """Everything the loop needs to continue where it stopped (plain types: weights_only-safe)."""

    epoch: int = -1  # last completed epoch; -1 before the first
    best_val: float = float("inf")
    best_epoch: int = -1
    epochs_without_improvement: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def atomic_save(obj: dict[str, Any], path: Path) -> None:
    # A kill mid-write must leave the previous file intact: write beside it, then rename.
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save(directory: Path, model_name: str, config: dict[str, Any], state: TrainState,
         model: torch.nn.Module, optimizer: torch.optim.Optimizer,
         scaler: torch.amp.GradScaler | None, run_id: str | None, best: bool) -> None:
    """Write last.pt (model, optimizer, scaler, loop state, config); best.pt too when best."""
    directory.mkdir(parents=True, exist_ok=True)
    payload = {"model_name": model_name, "config": config, "run_id": run_id,
               "state": asdict(state), "model": model.state_dict()}
    if best:
        atomic_save(payload, directory / BEST)
    payload |= {"optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "torch_rng": torch.get_rng_state()}
    atomic_save(payload, directory / LAST)


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint without executing any pickled code (weights_only=True)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ConfigError(f"{path} is not a checkpoint this project can load safely ({first_line(err)}): "
                          f"it holds more than tensors and plain values, or it is damaged; delete it "
                          f"to train that run from scratch") from err
    payload["state"] = TrainState(**payload["state"])
    return payload
