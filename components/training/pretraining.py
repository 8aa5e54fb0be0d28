"""Autoencoder pretraining (VaDE's before_fit stage): its output is a state file the main training loads.

The file is keyed by everything that determines it (feature cache digest, model and training
settings, seed), so runs and tuning trials with the same settings share one pretraining.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from components.models.base import VAE
from components.settings import Experiment
from components.training.checkpoint import atomic_save
from components.training.trainer import (
    MetricsCallback,
    Precision,
    autocast,
    embed_loader,
    make_optimizer,
    make_scaler,
    optimizer_step,
    to_device,
)


def pretrain_key(cache_digest: str, config: Experiment) -> str:
    train = config.train
    relevant = {"cache": cache_digest, "model": dataclasses.asdict(config.model), "seed": config.seed,
                "train": {k: getattr(train, k) for k in ("lr", "weight_decay", "batch_size", "grad_clip")}}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def _pretrain(model: VAE, loader: DataLoader, config: Experiment, device: torch.device,
              precision: Precision, on_epoch: MetricsCallback) -> None:
    train = config.train
    prior = set(getattr(model, "prior_parameters", ()))
    params = [p for name, p in model.named_parameters() if name not in prior]
    optimizer = make_optimizer(params, train, device)
    scaler = make_scaler(device, precision, model.reconstructed_features)
    for epoch in range(config.model.pretrain_epochs):
        model.train()
        total, count = 0.0, 0
        for batch in tqdm(loader, desc=f"pretrain {epoch}", unit="batch", leave=False):
            batch = to_device(batch, device)
            with autocast(device, precision):
                loss = model.pretrain_loss(batch)["total"]
            if not torch.isfinite(loss):
                raise RuntimeError(f"non-finite pretraining loss at epoch {epoch}; lower train.lr")
            optimizer_step(loss, optimizer, scaler, params, train.grad_clip)
            total += float(loss.detach()) * batch["mel"].shape[0]
            count += batch["mel"].shape[0]
        on_epoch({"pretrain/recon": total / count}, epoch)


def pretrain_and_init_mixture(model: VAE, loader: DataLoader, config: Experiment,
                              device: torch.device, precision: Precision, directory: Path,
                              cache_digest: str, on_epoch: MetricsCallback) -> Path:
    """Load the pretrained state for these settings, or pretrain the autoencoder, fit the
    mixture to the train latent means and save it (atomically). Returns the state file."""
    path = Path(directory) / f"{pretrain_key(cache_digest, config)}.pt"
    if not path.exists():
        _pretrain(model, loader, config, device, precision, on_epoch)
        latents = np.concatenate([mu.numpy() for _, mu in embed_loader(model, loader, device, precision)])
        model.init_mixture(latents, seed=config.seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save(model.state_dict(), path)
    model.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    return path
