"""Training checkpoints: written atomically, loaded with weights_only=True, rebuild the same model."""

from __future__ import annotations

import os
import pickle
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from components.config import ConfigError
from components.error_summary import first_line
from components.processes import gone
from components.settings import Experiment
from components.vocabulary import AUTO

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


def _temporary(path: Path) -> Path:
    return path.with_suffix(path.suffix + f".tmp{os.getpid()}")


def atomic_save(obj: dict[str, Any], path: Path) -> None:
    # A kill mid-write must leave the previous file intact: write beside it, then rename.
    tmp = _temporary(path)
    # torch.load never checks the records' CRC32 (a flipped byte loads silently either way), so
    # computing it is CPU time for nothing: about 1 s per GB here where the disk keeps up.
    torch.serialization.set_crc32_options(False)
    torch.save(obj, tmp)
    os.replace(tmp, path)


def remove_partial_writes(directory: Path) -> None:
    """Delete the half-written files (<name>.tmp<pid>, up to 1 GB each) that processes killed
    mid-write left in directory; those of live processes are theirs to finish."""
    for partial in Path(directory).glob("*.pt.tmp*"):
        if gone(partial.suffix.removeprefix(".tmp")):
            partial.unlink(missing_ok=True)


def _payload(model_name: str, config: Experiment, state: TrainState, model: torch.nn.Module,
             optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
             run_id: str | None) -> dict[str, Any]:
    # References to the live tensors (no copy): valid until the next epoch's training starts.
    return {"model_name": model_name, "config": config.to_dict(), "run_id": run_id, "state": asdict(state),
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "torch_rng": torch.get_rng_state()}


def _weights_only(payload: dict[str, Any]) -> dict[str, Any]:
    """What evaluation and serving load: the payload without optimizer, scaler and RNG."""
    return {k: v for k, v in payload.items() if k not in ("optimizer", "scaler", "torch_rng")}


def _finished(payload: dict[str, Any]) -> dict[str, Any]:
    """The last.pt of a fit that ended (epochs reached or early stopping): no epoch is left to
    train, so no Adam state (two thirds of VaDE's 2.0 GB) to resume it with."""
    return payload | {"optimizer": None, "scaler": None}


def _write(directory: Path, payload: dict[str, Any], best: bool,
           earlier_best: dict[str, Any] | None = None) -> None:
    """last.pt <- payload; best.pt <- the same file when this epoch is the best (a hard link: no
    second write), or earlier_best (a best epoch that was not written at once) first, so best.pt
    is never older than the best epoch last.pt names."""
    directory.mkdir(parents=True, exist_ok=True)
    if earlier_best is not None:
        atomic_save(earlier_best, directory / BEST)
    tmp = _temporary(directory / LAST)
    torch.serialization.set_crc32_options(False)  # see atomic_save
    torch.save(payload, tmp)
    if best:
        linked = _temporary(directory / BEST)
        try:
            os.link(tmp, linked)
            os.replace(linked, directory / BEST)
        except OSError:  # no hard links on this file system: the weights alone, a second write
            linked.unlink(missing_ok=True)
            atomic_save(_weights_only(payload), directory / BEST)
    os.replace(tmp, directory / LAST)


def _host_copy(value: Any, buffers: dict[str, torch.Tensor], key: str = "") -> Any:
    """The payload with every tensor copied to host memory, so training can go on mutating the
    originals (in place, on the GPU or CPU) while the copy is written. The copies go into buffers
    kept in `buffers` and reused by the next write (which waits for this one first), pinned for
    GPU tensors: a pageable copy took 1.3 s for VaDE's 2.0 GB on an H200 (benchmarks/gpu.py), and
    pinning is paid once."""
    if isinstance(value, torch.Tensor):
        buffer = buffers.get(key)
        if buffer is None or buffer.shape != value.shape or buffer.dtype != value.dtype:
            buffer = buffers[key] = torch.empty(value.shape, dtype=value.dtype, pin_memory=value.is_cuda)
        return buffer.copy_(value.detach(), non_blocking=value.is_cuda)
    if isinstance(value, dict):
        return {k: _host_copy(v, buffers, f"{key}/{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_host_copy(v, buffers, f"{key}/{i}") for i, v in enumerate(value))
    return value


AUTO_SHARE = 0.05


class Writer:
    """Writes a run's last.pt (model, optimizer, scaler, loop state, config) after every
    `every`-th epoch (or, with every="auto", after the first epoch and then after the first epoch
    ending at least 1/AUTO_SHARE times the last write's seconds after it: writes then take about
    5% of the fit whatever the epoch and model size; a background write counts for its whole
    duration, since the next save waits for it), and best.pt (what evaluation loads) so that
    it always holds the best epoch that last.pt names; inline or on one background thread.

    A full-size VaDE's last.pt is 2.0 GB (weights and both Adam moments): 5-11 s on a disk that
    writes 200-400 MB/s, more than an epoch of the benchmark's stand-in. So:
    - epochs between writes are kept by reference (save records them, no copy) and written by
      flush() when fit ends or is interrupted before the next epoch's training starts (pruning,
      Ctrl-C while logging); forget() drops that record once training changes the weights, so a
      run killed mid-epoch resumes from the last written epoch (`written_epoch`);
    - best.pt is never a second full write: a best epoch that is written becomes best.pt as a
      hard link to that last.pt (the next last.pt is a new file, so best.pt keeps it); a best
      epoch that is not has its weights copied to host memory (one copy of the weights, reused;
      0.3 s for VaDE on a 2-core CPU) and written as best.pt just before the next last.pt.

    In the background, a write costs the training loop one host copy of the weights and
    optimizer state (on a GPU a device-to-host copy it needs anyway); serialising and writing
    overlap the next epochs: torch.save releases the GIL while it writes. One write is in flight
    at a time: the next save waits for it, so at most one extra copy is alive. A failed
    background write raises at that wait.
    """

    def __init__(self, directory: Path, background: bool, every: int | str = 1) -> None:
        if every != AUTO and (not isinstance(every, int) or every < 1):
            raise ConfigError(f"train.checkpoint_every={every!r} must be {AUTO} or an integer of at least 1 "
                              f"(1 = every epoch)")
        self.directory = directory
        self.every = every
        self._write_seconds: float | None = None  # what the loop waited for the last write
        self._background_seconds = 0.0  # how long the last background write took on its thread
        self._written_at = 0.0  # time.perf_counter() when that write was done
        self.written_epoch: int | None = None  # the epoch of the newest last.pt this writer wrote
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="checkpoint") if background else None
        self._pending: Future | None = None
        self._unwritten: tuple[dict[str, Any], bool] | None = None  # (payload by reference, best)
        self._best_weights: dict[str, torch.Tensor] | None = None  # host buffers, reused
        self._best_payload: dict[str, Any] | None = None  # best epoch not yet in best.pt
        self._host_buffers: dict[str, torch.Tensor] = {}  # pinned copies of GPU tensors, reused
        remove_partial_writes(directory)

    @property
    def background(self) -> bool:
        return self._executor is not None

    def save(self, model_name: str, config: Experiment, state: TrainState, model: torch.nn.Module,
             optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
             run_id: str | None, best: bool) -> None:
        """Record the epoch that just ended (state.epoch); write it when it is an every-th one.
        A write still in flight is waited for only by the next write (flush), so an epoch that is
        not written never waits on the disk; one that failed raises here once it is done."""
        if self._pending is not None and self._pending.done():
            self.wait()
        payload = _payload(model_name, config, state, model, optimizer, scaler, run_id)
        self._unwritten = (payload, best)
        if self._due(state.epoch):
            self.flush()
        elif best:  # kept until a later write, since the next epochs change the weights in place
            self._keep_best(payload)

    def _keep_best(self, payload: dict[str, Any]) -> None:
        weights = payload["model"]
        if self._best_weights is None or self._best_weights.keys() != weights.keys():
            self._best_weights = {k: torch.empty(v.shape, dtype=v.dtype, device="cpu", pin_memory=v.is_cuda)
                                  for k, v in weights.items()}
        for name, value in weights.items():
            self._best_weights[name].copy_(value)
        self._best_payload = _weights_only(payload) | {"model": self._best_weights}

    def _due(self, epoch: int) -> bool:
        if self.every != AUTO:
            return (epoch + 1) % self.every == 0
        if self._write_seconds is None:  # the first write measures what one costs
            return True
        # A background write the next save would wait for costs the loop its whole duration.
        cost = max(self._write_seconds, self._background_seconds)
        return time.perf_counter() - self._written_at >= cost / AUTO_SHARE

    def flush(self, finished: bool = False) -> None:
        """Write the recorded epoch, if any (and the best epoch not yet in best.pt before it);
        finished: the fit ended after it, so last.pt needs no optimizer state."""
        if self._unwritten is None:
            return
        started = time.perf_counter()
        self.wait()
        (payload, best), self._unwritten = self._unwritten, None
        earlier_best, self._best_payload = (None if best else self._best_payload), None
        self.written_epoch = payload["state"]["epoch"]
        if finished:
            payload = _finished(payload)
        if self._executor is None:
            _write(self.directory, payload, best, earlier_best)
        else:
            copy = _host_copy(payload, self._host_buffers)
            if torch.cuda.is_available():
                torch.cuda.synchronize()  # the non-blocking copies are done before the thread reads
            if earlier_best is not None:  # the thread reads these host buffers: the next best gets new ones
                self._best_weights = None
            self._pending = self._executor.submit(self._timed_write, copy, best, earlier_best)
        self._written_at = time.perf_counter()
        self._write_seconds = self._written_at - started

    def _timed_write(self, payload: dict[str, Any], best: bool, earlier_best: dict[str, Any] | None) -> None:
        started = time.perf_counter()
        _write(self.directory, payload, best, earlier_best)
        self._background_seconds = time.perf_counter() - started

    def forget(self) -> None:
        """The weights are about to change: the recorded epoch can no longer be written."""
        self._unwritten = None

    def wait(self) -> None:
        """Block until the write in flight is on disk; raise its error if it failed."""
        pending, self._pending = self._pending, None
        if pending is not None:
            try:
                pending.result()
            except OSError as err:
                raise OSError(f"writing the checkpoint in {self.directory} failed: {err}; the "
                              f"previous checkpoint there is intact") from err


def load(path: Path, mmap: bool = False) -> dict[str, Any]:
    """Read a checkpoint without executing any pickled code (weights_only=True); with mmap, tensors
    are read from the file only when used (best.pt may be a full last.pt: its weights alone)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ConfigError(f"{path} is not a checkpoint this project can load safely ({first_line(err)}): "
                          f"it holds more than tensors and plain values, or it is damaged; delete it "
                          f"to train that run from scratch") from err
    payload["state"] = TrainState(**payload["state"])
    return payload
