"""Tiny fake datasets in each real dataset's on-disk layout (``make(root) -> Path``).

Written into a test's tmp_path on demand: no binary file is committed. Labels are blocky
random class maps, so every class colour/value covers whole blocks of pixels.
"""
