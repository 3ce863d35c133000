"""Running the installed CLIs in subprocesses: environment, free ports, two-worker clusters."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["VENV_BIN", "subprocess_env", "free_ports", "run_two_workers"]

VENV_BIN = Path(sys.executable).parent


def subprocess_env(**extra: str) -> dict:
    """Environment of a CLI subprocess: no GPU, quiet TensorFlow, unbuffered output, plus ``extra``."""
    env = dict(os.environ)
    env.update(CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    env.pop("TF_CONFIG", None)
    env.pop("TLT_KEY", None)
    env.update(extra)
    return env


def free_ports(count: int) -> list[int]:
    """``count`` TCP ports on 127.0.0.1 that were free a moment ago."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_two_workers(task: str, spec: Path, tmp_path: Path, *, timeout: float = 300) -> tuple[list, list]:
    """Run ``tlt-train <task>`` as worker 0 and 1 of a local TF_CONFIG cluster.

    Worker ``i`` writes into ``tmp_path/out<i>`` and logs to ``tmp_path/worker<i>.log``. Both
    processes are killed if either outlives ``timeout`` (a collective op waiting for a dead peer
    would otherwise hang the test run).

    Returns:
        The exit codes and the two logs' text.
    """
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    procs, logs = [], []
    try:
        for index in range(2):
            tf_config = json.dumps({"cluster": {"worker": workers},
                                    "task": {"type": "worker", "index": index}})
            log = open(tmp_path / f"worker{index}.log", "w")
            logs.append(log)
            procs.append(subprocess.Popen(
                [str(VENV_BIN / "tlt-train"), task, "-e", str(spec), "-r", str(tmp_path / f"out{index}")],
                stdout=log, stderr=subprocess.STDOUT, env=subprocess_env(TF_CONFIG=tf_config)))
        deadline = time.monotonic() + timeout
        codes = [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for log in logs:
            log.close()
    return codes, [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
