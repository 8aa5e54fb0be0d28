"""Training checkpoints: written atomically, loaded with weights_only=True, rebuild the same model."""

from __future__ import annotations

import os
import pickle
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
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
    # torch.load never checks the records' CRC32 (a flipped byte loads silently either way), so
    # computing it is CPU time for nothing: about 1 s per GB here where the disk keeps up.
    torch.serialization.set_crc32_options(False)
    torch.save(obj, tmp)
    os.replace(tmp, path)


def remove_partial_writes(directory: Path) -> None:
    """Delete the half-written files (<name>.tmp<pid>, up to 1 GB each) that processes killed
    mid-write left in directory; those of live processes are theirs to finish."""
    for partial in Path(directory).glob("*.pt.tmp*"):
        pid = partial.suffix.removeprefix(".tmp")
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            partial.unlink(missing_ok=True)


def _payload(model_name: str, config: dict[str, Any], state: TrainState, model: torch.nn.Module,
             optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
             run_id: str | None) -> dict[str, Any]:
    return {"model_name": model_name, "config": config, "run_id": run_id, "state": asdict(state),
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "torch_rng": torch.get_rng_state()}


def _write(directory: Path, payload: dict[str, Any], best: bool) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if best:  # the weights alone: what evaluation and serving load
        atomic_save({k: v for k, v in payload.items() if k not in ("optimizer", "scaler", "torch_rng")},
                    directory / BEST)
    atomic_save(payload, directory / LAST)


def _host_copy(value: Any) -> Any:
    """The payload with every tensor copied to host memory, so training can go on mutating the
    originals (in place, on the GPU or CPU) while the copy is written."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _host_copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_host_copy(v) for v in value)
    return value


class Writer:
    """Writes a run's last.pt (model, optimizer, scaler, loop state, config) after every epoch,
    and best.pt (the same without optimizer, scaler and RNG) when it is the best so far; inline
    or on one background thread.

    In the background, a checkpoint costs the training loop one host copy of the weights and
    optimizer state (on a GPU a device-to-host copy it needs anyway); serialising and writing
    (about 1 GB for a full-size model with Adam, seconds) overlap the next epoch: torch.save
    releases the GIL while it writes. One write is in flight at a time: the next save waits for
    it, so at most one extra copy is alive. A failed background write raises at that wait.
    """

    def __init__(self, directory: Path, background: bool) -> None:
        self.directory = directory
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="checkpoint") if background else None
        self._pending: Future | None = None
        remove_partial_writes(directory)

    @property
    def background(self) -> bool:
        return self._executor is not None

    def save(self, model_name: str, config: dict[str, Any], state: TrainState, model: torch.nn.Module,
             optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
             run_id: str | None, best: bool) -> None:
        self.wait()
        payload = _payload(model_name, config, state, model, optimizer, scaler, run_id)
        if self._executor is None:
            _write(self.directory, payload, best)
        else:
            self._pending = self._executor.submit(_write, self.directory, _host_copy(payload), best)

    def wait(self) -> None:
        """Block until the write in flight is on disk; raise its error if it failed."""
        pending, self._pending = self._pending, None
        if pending is not None:
            try:
                pending.result()
            except OSError as err:
                raise OSError(f"writing the checkpoint in {self.directory} failed: {err}; the "
                              f"previous checkpoint there is intact") from err


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
