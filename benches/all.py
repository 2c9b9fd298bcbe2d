#!/usr/bin/env python3
"""Runs every benchmark harness once and writes their figures, with the machine they ran on,
to benches/RESULTS.md.

Usage: sudo benches/all.py
Builds the release binary unless AI2IN_BIN is set; each harness installs its own baselines.
"""
import datetime
import os
import subprocess
import sys

from harness import REPO, machine, release_binary

HARNESSES = [
    ("Sandboxes: create, shell, density, warm pool", "node.py"),
    ("Files: 32 MiB round trip, small reads, watches", "files.py"),
    ("Code: warm and first runs, streaming, terminals", "run.py"),
    ("Network: set-up cost, proxy against direct, 1,000 sandboxes", "network.py"),
    ("Images: pull and unpack, creates from images, pool claims, idle memory", "images.py"),
    ("Storage: disks against tmpfs, dd, volumes, snapshots", "storage.py"),
    ("Hosting: deploy to first 200, the service URL against direct, redeploys", "hosting.py"),
    ("Databases: create to first query, pgbench, mysqlslap and redis-benchmark through the url, idle memory", "databases.py"),
    ("Desktops: create to display ready, screenshots, mouse and keys", "desktop.py"),
    ("Cluster: gateway against direct, placement throughput, PostgreSQL at 1,000 nodes", "cluster.py"),
]


def main():
    env = dict(os.environ, AI2IN_BIN=release_binary())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    lines = [
        "# Benchmark results",
        "",
        f"Written by `benches/all.py` on {datetime.date.today()} at commit `{commit}`; "
        f"{machine()}.",
        "Each figure is beside its baseline measured in the same run, with the ratio. Machines",
        "are shared and noisy: compare ratios rather than absolute figures.",
        "",
    ]
    failed = False
    for title, script in HARNESSES:
        print(f"== {script}", flush=True)
        run = subprocess.run([sys.executable, os.path.join(REPO, "benches", script)], env=env,
                             capture_output=True, text=True)
        output = [l for l in run.stdout.splitlines() if not l.startswith("machine:")]
        print("\n".join(output), flush=True)
        lines += [f"## {title}", "", "```", *output, "```", ""]
        if run.returncode != 0:
            failed = True
            lines += [f"`{script}` failed:", "", "```", run.stderr.strip()[-2000:], "```", ""]
            print(run.stderr[-2000:], file=sys.stderr)
    with open(os.path.join(REPO, "benches", "RESULTS.md"), "w") as f:
        f.write("\n".join(lines))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
