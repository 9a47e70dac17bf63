"""Freed batch buffers are kept for the next batch in the processes the package starts."""
import platform
import subprocess
import sys
import textwrap

import pytest

from napari_supn_anomaly.process_memory import reuse_freed_memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

BATCHES = textwrap.dedent("""
    import resource, sys
    import numpy as np
    if sys.argv[1] == "on":
        from napari_supn_anomaly.process_memory import reuse_freed_memory
        assert reuse_freed_memory()
    def batch():  # what a scoring batch does: large temporaries made and freed
        a = np.ones((64, 8, 64, 64), np.float32)
        b = np.ones((64, 16, 32, 32), np.float32)
        c = a.sum(axis=1); del a
        d = b * 2; del b
        return float(c.sum() + d.sum())
    batch()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        batch()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _page_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", BATCHES, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's; elsewhere nothing is changed")
def test_freed_buffers_are_reused_without_page_faults():
    assert reuse_freed_memory() is True
    faults_default, faults_kept = _page_faults("off"), _page_faults("on")
    assert faults_kept * 10 < faults_default, (faults_kept, faults_default)


def test_the_command_line_applies_it(monkeypatch):
    from napari_supn_anomaly import cli

    calls = []
    monkeypatch.setattr(cli, "reuse_freed_memory", lambda: calls.append(True))
    assert cli.main(["models"]) == 0
    assert calls == [True]
