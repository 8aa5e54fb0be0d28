"""Layers shared by the architectures, so no shape or block is written twice."""

from __future__ import annotations

import warnings

import torch.nn.functional as F
from torch import Tensor, nn


def fc_block(in_features: int, out_features: int, dropout: float) -> nn.Sequential:
    """Linear -> BatchNorm1d -> ReLU -> Dropout (the report's FC hidden layer)."""
    return nn.Sequential(nn.Linear(in_features, out_features), nn.BatchNorm1d(out_features),
                         nn.ReLU(inplace=True), nn.Dropout(dropout))


def conv_down(in_channels: int, out_channels: int, dropout: float) -> nn.Sequential:
    """Conv2d(k4, s2, p1) -> BatchNorm2d -> LeakyReLU(0.2) -> Dropout2d: halves height and width."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1),
                         nn.BatchNorm2d(out_channels), nn.LeakyReLU(0.2, inplace=True),
                         nn.Dropout2d(dropout))


def conv_up(in_channels: int, out_channels: int, dropout: float) -> nn.Sequential:
    """ConvTranspose2d(k4, s2, p1) -> BatchNorm2d -> LeakyReLU(0.2) -> Dropout2d: doubles both."""
    return nn.Sequential(nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1),
                         nn.BatchNorm2d(out_channels), nn.LeakyReLU(0.2, inplace=True),
                         nn.Dropout2d(dropout))


def conv_encoder_shape(input_shape: tuple[int, int], layers: int) -> tuple[int, int]:
    """Spatial size after `layers` conv_down blocks: each maps n -> floor(n / 2)."""
    height, width = input_shape
    for _ in range(layers):
        height, width = height // 2, width // 2
    if height < 1 or width < 1:
        raise ValueError(f"input {input_shape} is too small for {layers} stride-2 convolutions")
    return height, width


def announce_fit(produced: tuple[int, int], target: tuple[int, int]) -> None:
    """Say once, at build time, that the decoder output is cropped or padded (never silently)."""
    if produced != target:
        warnings.warn(
            f"conv decoder produces {produced[0]}x{produced[1]}; output is fitted to "
            f"{target[0]}x{target[1]} (crop, or pad by repeating the edge frames)", stacklevel=3)


def fit_to(x: Tensor, target: tuple[int, int]) -> Tensor:
    """Crop or edge-pad the last two dims of [B, C, H, W] to target (H, W)."""
    height, width = x.shape[-2:]
    x = x[..., : target[0], : target[1]]
    pad_h, pad_w = max(0, target[0] - height), max(0, target[1] - width)
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return x


def conv_encoder(in_channels: int, hidden_dims: list[int], dropout: float) -> nn.Sequential:
    """conv_down per entry of hidden_dims: [B, in, H, W] -> [B, hidden_dims[-1], H / 2^n, W / 2^n]."""
    channels = [in_channels, *hidden_dims]
    return nn.Sequential(*(conv_down(a, b, dropout) for a, b in zip(channels, channels[1:])))


def conv_decoder(hidden_dims: list[int], dropout: float) -> nn.Sequential:
    """The mirror of conv_encoder(1, hidden_dims): conv_up blocks, then a plain ConvT to 1 channel."""
    back = list(reversed(hidden_dims))
    return nn.Sequential(*(conv_up(a, b, dropout) for a, b in zip(back, back[1:])),
                         nn.ConvTranspose2d(back[-1], 1, 4, stride=2, padding=1))


def fc_encoder(features: int, hidden_dims: list[int], dropout: float) -> nn.Sequential:
    widths = [features, *hidden_dims]
    return nn.Sequential(*(fc_block(a, b, dropout) for a, b in zip(widths, widths[1:])))


def fc_decoder(latent_dim: int, hidden_dims: list[int], features: int, dropout: float) -> nn.Sequential:
    """The mirror of fc_encoder: FC blocks back through reversed hidden_dims, then a plain Linear."""
    back = [latent_dim, *reversed(hidden_dims)]
    return nn.Sequential(*(fc_block(a, b, dropout) for a, b in zip(back, back[1:])),
                         nn.Linear(hidden_dims[0], features))
