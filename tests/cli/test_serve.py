"""``safehaven serve --workers N``: workers do not outlive their supervisor."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.faults.harness import free_port, process_tree, running_in_group


@pytest.mark.slow
def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHAVEN_")}
    env["SAFEHAVEN_HOME"] = str(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from safehaven.cli import main; main()", "serve",
         "--port", str(port), "--workers", "2",
         "--database-url", f"sqlite:///{tmp_path / 's.db'}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, "serve exited"
            assert time.monotonic() < deadline, "serve did not start"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        workers = [p for p in process_tree(proc.pid) if p != proc.pid]
        assert len(workers) >= 2, workers  # two workers (and multiprocessing's tracker)
        proc.send_signal(signal.SIGKILL)  # the supervisor only, as the OOM killer would
        proc.wait(timeout=10)
        deadline = time.monotonic() + 30
        while running_in_group(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not running_in_group(proc.pid), "workers outlived their supervisor"
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def test_a_worker_started_after_its_supervisor_died_stops_at_once() -> None:
    """The watch compares with the supervisor's pid it was given, not with whoever is the
    parent when the worker gets round to watching (init's pid, once the supervisor died)."""
    code = ("import time\n"
            "from safehaven.cli.serve import watch_supervisor\n"
            "watch_supervisor(2**22 + 7, every=0.05)\n"  # not our parent: already gone
            "time.sleep(60)\n")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], timeout=30, check=False)
    assert proc.returncode == -signal.SIGTERM
    assert time.monotonic() - started < 20
