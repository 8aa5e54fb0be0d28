"""Mixed precision: which autocast dtype a step runs in, and the GradScaler float16 needs.

The losses here are sums over every reconstructed mel feature (165,376 per full-size window), so
their gradients are that many times larger than those of a mean loss: on an H200, fp32 parameter
gradients reached |g| = 45,512 (conv_vae) and 245,418 (multimodal) at batch 32, where float16
overflows at 65,504 (benchmarks/results/gpu_*.json). GradScaler's default initial scale (65,536,
sized for mean losses) overflowed every step: all seven architectures skipped their whole first
epoch. bfloat16 has float32's range and needs no scaler; float16 is only the fallback for GPUs
without bf16 (before Ampere), with an initial scale sized by the loss's feature count.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch

from components.errors import ConfigError

# GradScaler's own default, sized for a loss averaged over its elements.
MEAN_LOSS_INIT_SCALE = 2.0**16
# Below this scale float16 gradients would underflow to zero before they overflow: a scaler that
# keeps skipping down here is seeing inf/NaN gradients at any scale, not calibrating.
MIN_SCALE = 2.0**-24


@dataclass(frozen=True)
class Precision:
    """How a step runs: autocast dtype (or None) and whether a GradScaler is needed."""

    dtype: torch.dtype | None
    scaler: bool
    reason: str

    @property
    def label(self) -> str:
        return "fp32" if self.dtype is None else str(self.dtype).removeprefix("torch.")


FP32 = Precision(None, False, "train.amp=false")


def _bf16_on(device: torch.device) -> bool:
    # Without emulation: pre-Ampere GPUs report bf16 through slow emulated kernels.
    return device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)


def choose_precision(device: torch.device, amp: bool, dtype: str = "auto") -> Precision:
    """train.amp / train.amp_dtype -> Precision.

    auto: bfloat16 autocast without a scaler on GPUs with bf16 (Ampere and later, the report's RTX
    3060 included); float16 + GradScaler on older GPUs; float32 on CPUs, where bfloat16 autocast
    was slower than float32 on both CPUs measured: 11-12x on AMD EPYC without oneDNN bf16 kernels,
    about 2x on one that reports them (benchmarks/cpu_precision.py). An explicit dtype is honoured
    on any device (the CPU runs both, slowly: what the CPU tests of the float16 path use).
    """
    if not amp:
        return FP32
    if dtype == "bfloat16":
        if device.type == "cuda" and not _bf16_on(device):
            raise ConfigError(f"train.amp_dtype=bfloat16 but {torch.cuda.get_device_name(device)} has no "
                              f"bfloat16 kernels; use train.amp_dtype=auto (float16 + GradScaler there)")
        return Precision(torch.bfloat16, False, "train.amp_dtype=bfloat16")
    if dtype == "float16":
        return Precision(torch.float16, True, "train.amp_dtype=float16, with a GradScaler")
    if dtype != "auto":
        raise ConfigError(f"train.amp_dtype={dtype!r} is not one of auto, bfloat16, float16")
    if _bf16_on(device):
        return Precision(torch.bfloat16, False, "CUDA bfloat16 autocast (float32's range: no GradScaler)")
    if device.type == "cuda":
        return Precision(torch.float16, True, "CUDA float16 autocast with GradScaler (this GPU has no "
                                              "bfloat16)")
    return Precision(None, False, "AMP requested: float32 on the CPU (bf16 autocast was slower than "
                                  "float32 on every CPU measured)")


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    if precision.dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=precision.dtype)


def initial_scale(loss_elements: int) -> float:
    """GradScaler's initial scale for a loss summed over loss_elements: its default divided by
    them, rounded down to a power of two, so the first scaled gradients are about the size a mean
    loss's would be (2**-2 for a full-size window, 2**5 for a 16 x 87 test window)."""
    return 2.0 ** math.floor(math.log2(MEAN_LOSS_INIT_SCALE / max(loss_elements, 1)))


def make_scaler(device: torch.device, precision: Precision,
                loss_elements: int) -> torch.amp.GradScaler | None:
    if not precision.scaler:
        return None
    return torch.amp.GradScaler(device.type, init_scale=initial_scale(loss_elements))


class ScaleCalibration:
    """Tells a GradScaler still finding its scale from one that keeps skipping.

    From its initial scale the scaler halves on each overflowing step until one fits: those skips
    are calibration, not lost training. After the first good step every skip counts, and an epoch
    of nothing but skips means the weights did not move. A scale that falls below MIN_SCALE without
    a good step means the gradients are non-finite whatever the scale.
    """

    def __init__(self, calibrated: bool = False) -> None:
        self.calibrated = calibrated  # a resumed scaler has found its scale already
        self.calibration_steps = 0

    def record(self, stepped: bool) -> bool:
        """Count one step; True when it was a skip that counts (after calibration)."""
        if stepped:
            self.calibrated = True
            return False
        if not self.calibrated:
            self.calibration_steps += 1
            return False
        return True

    def hopeless(self, scale: float) -> bool:
        return not self.calibrated and scale < MIN_SCALE
