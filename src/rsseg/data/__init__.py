"""Datasets: synthetic scene generation, tiling and loading of image/mask pairs."""
