"""Host-side helpers of the ai2in end-to-end suite: waiting with deadlines, and looking at
what a sandbox leaves on the host (cgroups, processes, directories, mounts).

Everything here reads the host's own view (/proc, /sys/fs/cgroup); nothing goes through the
node, so a test can check the node's claims against the kernel.
"""

from __future__ import annotations

import datetime as _dt
import glob
import os
import re
import secrets
import signal
import string
import time
from pathlib import Path
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")

CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "cpu", "pids", "freezer")
SANDBOX_ID_RE = re.compile(r"^sbx_[0-9A-Za-z]+$")
KEY_RE = re.compile(r"^ai2in_live_[0-9A-Za-z]{32,}$")
MIB = 1 << 20
GIB = 1 << 30


# ---------------------------------------------------------------------------------------------
# waiting


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    message: str | Callable[[], str],
    interval: float = 0.1,
) -> T:
    """Calls `predicate` until it returns something truthy (which is returned) or `timeout`
    seconds have passed (AssertionError with `message`). Exceptions of the predicate count as
    "not yet" and the last one is reported."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except Exception as e:  # noqa: BLE001 - reported below
            last = e
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"{text} (waited {timeout:.0f} s; last: {last!r})")
        time.sleep(interval)


def random_token(n: int = 16) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


# ---------------------------------------------------------------------------------------------
# time


def parse_rfc3339_utc(value: str) -> _dt.datetime:
    """Parses an RFC 3339 timestamp and insists it is in UTC."""
    assert isinstance(value, str), f"timestamp must be a string, got {value!r}"
    assert re.match(
        r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|\+00:00)$", value
    ), f"not an RFC 3339 UTC timestamp: {value!r}"
    parsed = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.utcoffset() == _dt.timedelta(0), f"timestamp not in UTC: {value!r}"
    return parsed


def epoch(value: str) -> float:
    return parse_rfc3339_utc(value).timestamp()


# ---------------------------------------------------------------------------------------------
# cgroups


def cgroup_v2() -> bool:
    return (CGROUP_ROOT / "cgroup.controllers").exists()


def cgroup_dirs(sandbox_id: str) -> list[str]:
    """Every cgroup directory of the sandbox that exists, in any hierarchy."""
    found = set(glob.glob(str(CGROUP_ROOT / "*" / "ai2in" / sandbox_id)))
    found.update(glob.glob(str(CGROUP_ROOT / "ai2in" / sandbox_id)))
    return sorted(p for p in found if os.path.isdir(p))


def cgroup_file(sandbox_id: str, controller: str, name: str) -> Path:
    """Path of a control file of the sandbox's cgroup: v1 `<controller>/ai2in/<id>/<name>`,
    v2 `ai2in/<id>/<name>` (the controller is then implied by the name)."""
    if cgroup_v2():
        return CGROUP_ROOT / "ai2in" / sandbox_id / name
    return CGROUP_ROOT / controller / "ai2in" / sandbox_id / name


def cgroup_pids(sandbox_id: str) -> set[int]:
    """Pids listed in the sandbox's cgroup(s)."""
    pids: set[int] = set()
    for d in cgroup_dirs(sandbox_id):
        for name in ("cgroup.procs", "tasks"):
            try:
                text = Path(d, name).read_text()
            except OSError:
                continue
            pids.update(int(x) for x in text.split())
    return pids


def all_ai2in_cgroups() -> list[str]:
    """All sandbox cgroups on the host (any node)."""
    found = set(glob.glob(str(CGROUP_ROOT / "*" / "ai2in" / "sbx_*")))
    found.update(glob.glob(str(CGROUP_ROOT / "ai2in" / "sbx_*")))
    return sorted(found)


# ---------------------------------------------------------------------------------------------
# processes


def proc_status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def pid_alive(pid: int) -> bool:
    """True when `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat[stat.rfind(")") + 2 :].split(" ", 1)[0]
    return state not in ("Z", "X")


def processes_in_sandbox_cgroup(sandbox_id: str) -> list[int]:
    """Host pids whose /proc/PID/cgroup names the sandbox's cgroup (independently of the
    cgroup directories, which might already be gone)."""
    needle = re.compile(r"/ai2in/" + re.escape(sandbox_id) + r"(/|$)")
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/cgroup").read_text()
        except OSError:
            continue
        if any(needle.search(line) for line in text.splitlines()) and pid_alive(int(entry)):
            pids.append(int(entry))
    return pids


def agent_pid(sandbox_id: str) -> int:
    """Host pid of the sandbox's PID 1 (its agent): the process of its cgroup that is pid 1 of
    its own pid namespace."""
    candidates = cgroup_pids(sandbox_id) or set(processes_in_sandbox_cgroup(sandbox_id))
    for pid in sorted(candidates):
        try:
            nspid = proc_status(pid).get("NSpid", "").split()
        except OSError:
            continue
        if len(nspid) >= 2 and nspid[-1] == "1":
            return pid
    raise AssertionError(
        f"no process of sandbox {sandbox_id} is pid 1 of a pid namespace "
        f"(cgroup pids: {sorted(candidates)})"
    )


def host_uids(pid: int) -> list[int]:
    """Real, effective, saved and fs uid of a host process, as the host sees them."""
    return [int(x) for x in proc_status(pid)["Uid"].split()]


def read_cmdlines() -> dict[int, str]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                raw = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            out[int(entry)] = raw.replace(b"\0", b" ").decode(errors="replace")
    return out


# ---------------------------------------------------------------------------------------------
# leak checks


def mountinfo_lines(needle: str) -> list[str]:
    return [l for l in Path("/proc/self/mountinfo").read_text().splitlines() if needle in l]


def leftovers(state_dir: str | os.PathLike, sandbox_id: str) -> list[str]:
    """What of a sandbox is still on the host; empty when it is gone for good."""
    found = []
    d = Path(state_dir) / "sandboxes" / sandbox_id
    if d.exists():
        found.append(f"directory {d}")
    found += [f"cgroup {c}" for c in cgroup_dirs(sandbox_id)]
    found += [f"process {p} in its cgroup" for p in processes_in_sandbox_cgroup(sandbox_id)]
    found += [f"mount {l}" for l in mountinfo_lines(sandbox_id)]
    return found


def assert_gone_from_host(state_dir, sandbox_ids: Iterable[str], timeout: float = 15.0) -> None:
    ids = list(sandbox_ids)

    def nothing_left():
        return not any(leftovers(state_dir, i) for i in ids)

    wait_until(
        nothing_left,
        timeout,
        lambda: "sandboxes left things on the host: "
        + "; ".join(f"{i}: {leftovers(state_dir, i)}" for i in ids if leftovers(state_dir, i)),
        interval=0.2,
    )


# ---------------------------------------------------------------------------------------------
# harness clean-up (only for sandboxes this suite created, when the node failed to)


def force_destroy(sandbox_id: str) -> None:
    """Kills what is left in the sandbox's cgroups and removes them. Used by fixtures after
    the node was stopped, so that one broken test does not pollute the host for the next."""
    if not SANDBOX_ID_RE.match(sandbox_id):
        return
    freezer_state = cgroup_file(sandbox_id, "freezer", "freezer.state")
    try:
        if freezer_state.exists():
            freezer_state.write_text("THAWED")
        elif cgroup_v2():
            cgroup_file(sandbox_id, "", "cgroup.freeze").write_text("0")
    except OSError:
        pass
    for _ in range(50):
        pids = cgroup_pids(sandbox_id) | set(processes_in_sandbox_cgroup(sandbox_id))
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.1)
    # children first
    for d in sorted(cgroup_dirs(sandbox_id), key=len, reverse=True):
        for sub, _dirs, _files in sorted(os.walk(d), key=lambda t: len(t[0]), reverse=True):
            try:
                os.rmdir(sub)
            except OSError:
                pass
