"""Supervised training: the Lightning module and ``train()``, losses, optimisers, callbacks."""
