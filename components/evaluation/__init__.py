"""Scoring latent spaces: clustering, the protocol, chance levels, baselines, tables."""
