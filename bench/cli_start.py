"""Benchmark: how long a `ridgerider` command that reads stored results takes, start to exit.

Those commands (`--help`, `jobs`, `status`, `solutions`, `keys list`) import neither torch, scipy,
Celery nor FastAPI; the commands that search load them where they start. Each row runs the
installed command `--repeats` times in a folder holding one small finished job (Himmelblau,
run first) and, as the peer, the same command in a process that first imports what every
command imported before (torch, scipy.optimize, Celery, FastAPI: the cost a command would pay
with the engine loaded at start). Medians of wall time, process start included.

Run: `python bench/cli_start.py` (about a minute; one core is enough).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import print_table

RIDGERIDER = Path(sys.executable).parent / "ridgerider"
COMMANDS = (["--help"], ["jobs"], ["status", "1"], ["solutions", "1"], ["keys", "list"])
ENGINE = "import torch, scipy.optimize, celery, fastapi"


def seconds(command: list[str], cwd: Path) -> float:
    """Wall time of one run of `command` in `cwd`, which must succeed."""
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        where = Path(folder)
        subprocess.run(
            [str(RIDGERIDER), "run", "--problem", "himmelblau"],
            cwd=where,
            check=True,
            capture_output=True,
        )
        rows = []
        for command in COMMANDS:
            peer = [sys.executable, "-c", f"{ENGINE}\nfrom api.cli import app\napp({command!r})"]
            shipped = [seconds([str(RIDGERIDER), *command], where) for _ in range(args.repeats)]
            loaded = [seconds(peer, where) for _ in range(args.repeats)]
            a, b = statistics.median(shipped), statistics.median(loaded)
            rows.append(
                [f"`ridgerider {' '.join(command)}`", f"{a:.2f}", f"{b:.2f}", f"{b / a:.1f}x"]
            )
        print_table(["command", "seconds", "engine loaded first (peer)", "speed-up"], "lrrr", rows)


if __name__ == "__main__":
    main()
