"""Multimodal VAE: audio (conv or FC encoder) + a frozen lyrics embedding, fused early, late or by
cross-modal attention into one latent; it reconstructs both the spectrogram and the embedding."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from torch import Tensor, nn

from components.models.base import VAE, Batch, VAEOutput, gaussian_kl, summed_squared_error
from components.models.blocks import (
    announce_fit,
    conv_decoder,
    conv_encoder,
    conv_encoder_shape,
    fc_decoder,
    fc_encoder,
    fit_to,
)
from components.settings import BIG, ModelSettings, Range
from components.vocabulary import AUDIO_ENCODERS, FUSIONS

Weight = Annotated[float, Range(0.0, 1.0, "0.5 weighs audio and lyrics equally")]


@dataclass
class MultimodalSettings(ModelSettings):
    fusion: Literal[FUSIONS] = "attention"
    audio_encoder: Literal[AUDIO_ENCODERS] = "conv"
    audio_weight: Weight = 0.5
    lyrics_weight: Weight = 0.5
    attention_heads: Annotated[int, Range(1, 1024, "8 is the default")] = 8
    lyrics_dim: Annotated[int, Range(1, BIG, "set from the lyrics encoder; leave it null")] | None = None


class MultimodalVAE(VAE):
    """batch "mel" [B, 1, n_mels, T] + "lyrics" [B, lyrics_dim] + "has_lyrics" [B] -> z [B, latent].

    Songs without lyrics use a learned "no lyrics" vector in place of the embedding.
    Each modality's features are scaled by 2 x its weight before fusion (0.5 / 0.5: unchanged).
    - early: audio features and lyrics features concatenated -> mu, logvar.
    - late: the audio half and the lyrics half of the latent come from separate heads.
    - attention: the lyrics token attends over the audio time steps (8 heads); the weighted sum
      of the pooled audio and the attended lyrics gives mu, logvar.
    """

    uses_lyrics = True
    Settings = MultimodalSettings

    def __init__(self, input_shape: tuple[int, int], latent_dim: int, hidden_dims: list[int],
                 dropout: float, lyrics_dim: int, fusion: str = "attention", audio_encoder: str = "conv",
                 audio_weight: float = 0.5, lyrics_weight: float = 0.5, attention_heads: int = 8,
                 fusion_dim: int = 256, beta: float = 1.0, kl_warmup_epochs: int = 0) -> None:
        if not lyrics_dim:
            raise ValueError("multimodal: model.lyrics_dim is set from the lyrics encoder at training "
                             "time; pass it explicitly to build the model by hand")
        super().__init__(input_shape, latent_dim, beta, kl_warmup_epochs)
        if fusion not in FUSIONS:
            raise ValueError(f"model.fusion '{fusion}' unknown; choose one of {', '.join(FUSIONS)}")
        if audio_encoder not in AUDIO_ENCODERS:
            raise ValueError(f"model.audio_encoder '{audio_encoder}' unknown; choose conv or basic")
        self.fusion, self.audio_kind = fusion, audio_encoder
        self.audio_weight, self.lyrics_weight = 2 * audio_weight, 2 * lyrics_weight
        n_mels, frames = input_shape
        if audio_encoder == "conv":
            self.audio_encoder = conv_encoder(1, hidden_dims, dropout)
            self.map_shape = (hidden_dims[-1], *conv_encoder_shape(input_shape, len(hidden_dims)))
            token_dim, self.audio_flat = self.map_shape[0] * self.map_shape[1], math.prod(self.map_shape)
            self.fc_decode = nn.Linear(latent_dim, self.audio_flat)
            self.audio_decoder = conv_decoder(hidden_dims, dropout)
            scale = 2 ** len(hidden_dims)
            produced = (self.map_shape[1] * scale, self.map_shape[2] * scale)
            announce_fit(produced, self.input_shape)
            self.decoded_shape = (min(produced[0], input_shape[0]), min(produced[1], input_shape[1]))
        else:
            self.audio_encoder = fc_encoder(n_mels * frames, hidden_dims, dropout)
            token_dim = self.audio_flat = hidden_dims[-1]
            self.audio_decoder = fc_decoder(latent_dim, hidden_dims, n_mels * frames, dropout)
        self.no_lyrics = nn.Parameter(torch.zeros(lyrics_dim))
        self.lyrics_encoder = nn.Sequential(nn.Linear(lyrics_dim, fusion_dim), nn.ReLU(inplace=True))
        self.lyrics_decoder = nn.Linear(latent_dim, lyrics_dim)
        if fusion == "early":
            self.heads = nn.Linear(self.audio_flat + fusion_dim, 2 * latent_dim)
        elif fusion == "late":
            audio_latent = latent_dim // 2
            self.audio_heads = nn.Linear(self.audio_flat, 2 * audio_latent)
            self.lyrics_heads = nn.Linear(fusion_dim, 2 * (latent_dim - audio_latent))
        else:
            self.audio_tokens = nn.Linear(token_dim, fusion_dim)
            self.attention = nn.MultiheadAttention(fusion_dim, attention_heads, batch_first=True)
            self.heads = nn.Linear(fusion_dim, 2 * latent_dim)


    def lyrics_input(self, batch: Batch) -> Tensor:
        """[B, lyrics_dim]: the embedding, or the learned no-lyrics vector where there is none."""
        lyrics = batch["lyrics"]
        has = batch["has_lyrics"][:, None].to(torch.bool)
        return torch.where(has, lyrics, self.no_lyrics.to(lyrics.dtype).expand_as(lyrics))

    def encode(self, batch: Batch) -> tuple[Tensor, Tensor]:
        mel = batch["mel"]
        audio = self.audio_encoder(mel if self.audio_kind == "conv" else mel.flatten(1))
        lyrics = self.lyrics_encoder(self.lyrics_input(batch)) * self.lyrics_weight
        if self.fusion == "attention":
            if self.audio_kind == "conv":  # [B, C, h, w] -> w time-step tokens of C*h features
                tokens = audio.permute(0, 3, 1, 2).flatten(2)
            else:
                tokens = audio[:, None, :]
            tokens = self.audio_tokens(tokens)
            attended, _ = self.attention(lyrics[:, None, :], tokens, tokens, need_weights=False)
            fused = self.audio_weight * tokens.mean(dim=1) + attended[:, 0] + lyrics
            stats = self.heads(fused)
        elif self.fusion == "early":
            stats = self.heads(torch.cat([audio.flatten(1) * self.audio_weight, lyrics], dim=1))
        else:
            audio_mu, audio_logvar = self.audio_heads(audio.flatten(1) * self.audio_weight).chunk(2, dim=1)
            lyrics_mu, lyrics_logvar = self.lyrics_heads(lyrics).chunk(2, dim=1)
            return torch.cat([audio_mu, lyrics_mu], 1), torch.cat([audio_logvar, lyrics_logvar], 1)
        mu, logvar = stats.chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: Tensor, batch: Batch) -> Tensor:
        if self.audio_kind == "conv":
            hidden = self.fc_decode(z).view(-1, *self.map_shape)
            return fit_to(self.audio_decoder(hidden), self.input_shape)
        return self.audio_decoder(z).view(-1, 1, *self.input_shape)

    def loss(self, batch: Batch, out: VAEOutput, epoch: int) -> dict[str, Tensor]:
        """recon = audio + lyrics-embedding squared errors (the latter only where lyrics exist)."""
        audio = self.reconstruction_error(out.recon, batch["mel"])
        has = batch["has_lyrics"].float()
        lyrics = summed_squared_error(self.lyrics_decoder(out.z.float()), batch["lyrics"]) * has
        recon = (audio + lyrics).mean()
        kl = gaussian_kl(out.mu.float(), out.logvar.float()).mean()
        return {"total": recon + self.kl_weight(epoch) * kl, "recon": recon, "kl": kl,
                "recon_audio": audio.mean(), "recon_lyrics": lyrics.mean()}
