"""train.lean_host_memory: freed blocks leave the process instead of staying resident in the heap."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from components.config import PROJECT_ROOT

# Each 3 MB block is followed by a small block that outlives it, as a step's tensors are by
# longer-lived ones; the blocks are then freed. Prints how much stays resident, in MB.
FRAGMENTING = """
import re, sys
import numpy as np
from components.training.host_memory import map_large_allocations

def resident_heap_mb():
    return int(re.search(r"RssAnon:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) / 1024

if sys.argv[1] == "lean":
    assert map_large_allocations()
np.ones(4 << 20, np.uint8)  # a freed 4 MB mapping: glibc raises its threshold to 4 MB
before = resident_heap_mb()
blocks, kept = [], []
for _ in range(100):
    blocks.append(np.ones(3 << 20, np.uint8))
    kept.append(np.ones(200 << 10, np.uint8))
del blocks
print(round(resident_heap_mb() - before))
"""


def _left_resident_mb(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", FRAGMENTING, mode], capture_output=True, text=True,
                            env=os.environ | {"PYTHONPATH": str(PROJECT_ROOT)}, check=True)
    return int(result.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_blocks_leave_the_process_with_a_fixed_threshold():
    assert _left_resident_mb("plain") > 250  # 300 MB freed, kept resident behind the small blocks
    assert _left_resident_mb("lean") < 50  # only the 20 MB still in use
