"""keep_freed_memory: a block freed and allocated again is reused, not faulted in from the kernel."""

import os
import platform
import subprocess
import sys
from pathlib import Path

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
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}  # glibc as it is, unless told
    out = subprocess.run(
        [sys.executable, "-c", REFAULTS, allocator], capture_output=True, text=True, check=True, env=env
    )
    kept, faults = out.stdout.split()
    return kept == "True", int(faults)


def huge_pages_always() -> bool:
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    return thp.is_file() and "[always]" in thp.read_text()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="keep_freed_memory configures glibc's allocator")
@pytest.mark.skipif(huge_pages_always(), reason="transparent huge pages fault far fewer times than pages")
def test_kept_memory_is_reused_without_page_faults():
    kept, faults_kept = page_faults("keep")
    _, faults_system = page_faults("system")
    assert kept
    pages = 4 * (64 << 20) // resource_page_size()  # of the last 4 cycles
    assert faults_system > pages // 2  # glibc maps a block this large afresh: every page faults again
    assert faults_kept < pages // 50


def resource_page_size() -> int:
    import resource

    return resource.getpagesize()


def test_train_eval_and_md_take_an_allocator_choice():
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


def test_train_keeps_freed_memory_on_cpu_only_and_leaves_overrides_alone(monkeypatch):
    import ictp_model.device

    calls = []
    monkeypatch.setattr(ictp_model.device, "keep_freed_memory", lambda: calls.append(True) or True)
    from ictp_model.cli.main import _allocator

    _allocator("keep", "cpu")
    _allocator("keep", "cuda:0")
    _allocator("system", "cpu")
    assert calls == [True]
    args, extra = build_parser().parse_known_args(["train", "c.yaml", "--max_epochs", "5", "--allocator", "system"])
    assert args.allocator == "system" and extra == ["c.yaml", "--max_epochs", "5"]
