"""Differential privacy for fedsynth: accounting (Opacus's accountants), the clients' mechanisms and the
empirical audit. Plain PyTorch and NumPy (Opacus only for its accountants and DP-SGD)."""
