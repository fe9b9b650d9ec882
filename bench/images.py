"""Image benchmark (issue 5): each connector image's size and `docker run --rm IMAGE spec` time.

Run `python -m bench.images [--repeat K]` after `make images`. Reports best and median seconds
per image beside an empty container's start (`--entrypoint true`), the floor any command pays.
Goals: each image under 600 MB, `spec` under 3 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

IMAGES = ("pgbyte/source-postgres:dev", "pgbyte/destination-postgres:dev")
SIZE_GOAL_MB = 600
SPEC_GOAL_S = 3.0


def _timed(argv: list[str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.decode()[-500:]}")
    if argv[-1] == "spec":  # a fast answer that is not a SPEC message would be no answer
        first = json.loads(result.stdout.splitlines()[0])
        if first.get("type") != "SPEC":
            raise RuntimeError(f"{argv[3]} spec printed {first.get('type')}, not SPEC")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.images", description=__doc__)
    parser.add_argument("--repeat", type=int, default=5, help="runs per image")
    args = parser.parse_args()
    missed = False
    empty = [_timed(["docker", "run", "--rm", "--entrypoint", "true", IMAGES[0]])
             for _ in range(args.repeat)]  # fmt: skip
    median = statistics.median(empty)
    print(f"empty container start: best {min(empty):.2f} s, median {median:.2f} s")
    for image in IMAGES:
        size = int(subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", image],
                                  capture_output=True, text=True, check=True).stdout)  # fmt: skip
        times = [_timed(["docker", "run", "--rm", image, "spec"]) for _ in range(args.repeat)]
        size_mb = size / 1e6
        ok = size_mb < SIZE_GOAL_MB and statistics.median(times) < SPEC_GOAL_S
        missed |= not ok
        print(
            f"{image}: {size_mb:.0f} MB (goal < {SIZE_GOAL_MB}), spec best {min(times):.2f} s, "
            f"median {statistics.median(times):.2f} s (goal < {SPEC_GOAL_S:.0f} s): "
            f"{'met' if ok else 'MISSED'}"
        )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
