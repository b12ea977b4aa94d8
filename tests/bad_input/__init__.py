"""The bad-input catalogue: every way a user's input, files or machine can go wrong, one test each.

Each test asserts the exit code (2 for a user error), that the one-line message names the file
or key at fault, and that nothing was lost or half-written. One module per area.
"""
