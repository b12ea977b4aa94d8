"""Freed memory kept in the process while predicting, returned afterwards (glibc).

Checked in a fresh interpreter: in a long test process, earlier work leaves free heap space
that glibc may serve a large block from, whatever the thresholds."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from rsseg import allocator

pytestmark = pytest.mark.skipif(not allocator.available(), reason="needs glibc's mallopt")

SCRIPT = textwrap.dedent("""
    from pathlib import Path
    import numpy as np
    from rsseg.allocator import warm_allocator

    MB = 96  # above glibc's largest dynamic mmap threshold (32 MB)

    def rss():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    def freed_block_stays():
        before = rss()
        block = np.ones(MB << 20, dtype=np.uint8)
        assert rss() - before > 0.8 * MB
        del block
        return rss() - before > 0.8 * MB

    assert not freed_block_stays(), "default: a block this size is unmapped when freed"
    with warm_allocator():
        with warm_allocator():  # re-entrant: the inner exit keeps the setting
            pass
        before = rss()
        assert freed_block_stays(), "inside: the freed block stays resident"
        again = np.ones(MB << 20, dtype=np.uint8)
        assert rss() - before < 1.2 * MB, "inside: the kept block is reused, not added to"
        del again
    assert rss() - before < 0.2 * MB, "after: malloc_trim gave the memory back"
    assert not freed_block_stays(), "after: large blocks are unmapped on free again"
    print("ok")
""")


def test_large_blocks_are_kept_inside_and_returned_after():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
