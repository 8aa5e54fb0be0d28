"""Fitting a model: the trainer, checkpoints, pretraining, memory options."""
