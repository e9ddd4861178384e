"""keep_freed_memory: a block freed and allocated again is reused, not faulted in from the kernel."""

import platform
import subprocess
import sys

import pytest

from ictp_model.cli.main import build_parser

REFAULTS = """
import resource, sys, torch
from ictp_model.device import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
faults = []
for cycle in range(8):  # 64 MiB touched and freed, 8 times; the first cycles settle the heap
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.empty(64 << 20, dtype=torch.uint8)
    block.fill_(1)
    del block
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(kept, sum(faults[4:]))
"""


def page_faults(allocator: str) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", REFAULTS, allocator], capture_output=True, text=True, check=True)
    kept, faults = out.stdout.split()
    return kept == "True", int(faults)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="keep_freed_memory configures glibc's allocator")
def test_kept_memory_is_reused_without_page_faults():
    kept, faults_kept = page_faults("keep")
    _, faults_system = page_faults("system")
    assert kept
    pages = 4 * (64 << 20) // 4096  # of the last 4 cycles
    assert faults_system > pages // 2  # glibc maps a block this large afresh: every page faults again
    assert faults_kept < pages // 50


def test_the_commands_that_evaluate_take_an_allocator_choice():
    parser = build_parser()
    for argv in (
        ["eval", "--model", "m.pt", "--data", "d.xyz"],
        ["md", "--model", "m.pt", "--structure", "s.xyz", "--out", "t.xyz"],
        ["train"],
    ):
        assert parser.parse_known_args(argv)[0].allocator == "keep"
        assert parser.parse_known_args(argv + ["--allocator", "system"])[0].allocator == "system"
        with pytest.raises(SystemExit):
            parser.parse_known_args(argv + ["--allocator", "tcmalloc"])
