"""The security suite: real attacks, run as root inside a sandbox through `/shell`, one per
isolation layer. Each test asserts that the attack fails *and* that the host (or the other
sandbox) is untouched, and carries a positive control where an empty answer could otherwise
pass for a blocked attack.

Nothing here can harm the host even if a layer is missing: every write targets a new file
with a random name (removed afterwards), sysrq gets the harmless `h`, sysctls get their
current host value, module calls name modules that do not exist.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from e2e_util import (
    MIB,
    agent_pid,
    cgroup_file,
    cgroup_pids,
    cgroup_v2,
    host_uids,
    pid_alive,
    random_token,
    wait_until,
)

EPERM = 1
FORK_BOMB = "bash -c ':(){ :|:& };:; exec sleep 60' 2>/dev/null"

# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def victim(node):
    """The sandbox most attacks run in."""
    s = node.create_sandbox(timeout_ms=1_800_000)
    yield s["id"]
    node.delete(f"/v1/sandboxes/{s['id']}")


@pytest.fixture(scope="module")
def neighbour(node):
    """A second sandbox of the same tenant, for cross-sandbox attacks."""
    s = node.create_sandbox(timeout_ms=1_800_000)
    yield s["id"]
    node.delete(f"/v1/sandboxes/{s['id']}")


@pytest.fixture
def throwaway(node):
    """A sandbox for attacks that may wreck it."""
    created = []

    def make(**body):
        s = node.create_sandbox(**body)
        created.append(s["id"])
        return s["id"]

    yield make
    for sid in created:
        node.delete(f"/v1/sandboxes/{sid}")


@pytest.fixture(scope="module")
def host_secrets(node):
    """World-readable secret files on the host, in places a sandbox might reach if its
    mount isolation were missing: {path: content}."""
    token = random_token(10)
    tmp_dir = Path(f"/tmp/ai2in-secret-dir-{token}")
    tmp_dir.mkdir(mode=0o755)
    files = {
        Path(f"/root/ai2in-secret-{token}"): "host-root-secret-" + random_token(24),
        tmp_dir / f"ai2in-secret-{token}": "host-tmp-secret-" + random_token(24),
        Path(node.state_dir) / f"ai2in-secret-{token}": "host-state-secret-" + random_token(24),
    }
    for path, content in files.items():
        path.write_text(content + "\n")
        os.chmod(path, 0o644)
    yield {str(p): c for p, c in files.items()}
    for path in files:
        path.unlink(missing_ok=True)
    shutil.rmtree(tmp_dir, ignore_errors=True)


@pytest.fixture
def host_process():
    """A process on the host with a unique marker as its argv[0]: (pid, marker, Popen)."""
    marker = "ai2in-e2e-marker-" + random_token(10)
    proc = subprocess.Popen(
        ["bash", "-c", f"exec -a {marker} sleep 1000"], start_new_session=True,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_until(
        lambda: marker.encode() in Path(f"/proc/{proc.pid}/cmdline").read_bytes(), 5, "marker process did not start"
    )
    yield proc.pid, marker, proc
    proc.kill()
    proc.wait()


def outputs(res) -> str:
    return res["stdout"] + res["stderr"] + (res.get("error") or "")


def py(node, sid, script, user=None, timeout_ms=60_000):
    """Runs a Python script inside; its last stdout line must be JSON, which is returned."""
    body = {"stdin": script, "timeout_ms": timeout_ms}
    if user:
        body["user"] = user
    res = node.sh(sid, "python3 -", **body)
    assert res["exit_code"] == 0, f"script failed: {res}"
    return json.loads(res["stdout"].strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# mount namespace, pivot_root, private rootfs


def test_sandbox_cannot_read_host_files(node, victim, host_secrets):
    admin_key = node.admin_key
    control = "control-" + random_token(16)
    node.run(victim, f"echo {control} > /home/user/control-file")
    paths = list(host_secrets) + [f"{node.state_dir}/admin.key", f"{node.state_dir}/ai2in.db"]
    cmd = "; ".join(
        f"cat {p}; cat /proc/1/root{p}; cat /proc/self/root{p}; cat /proc/self/cwd/../../..{p}" for p in paths
    )
    for user in (None, "user"):
        body = {"user": user} if user else {}
        res = node.sh(victim, cmd + "; echo END", **body)
        text = outputs(res)
        assert "END" in res["stdout"], f"the attack script did not run: {res}"
        for path, content in host_secrets.items():
            assert content not in text, f"host file {path} readable from inside (as {user or 'root'})"
        assert admin_key not in text, "the node's admin key is readable from inside"

    # Search by name and by content over the sandbox's whole tree (the read-only /usr of the
    # image, /proc and /dev excluded; the positive control shows the search works).
    name_pattern = "ai2in-secret*"
    found = node.sh(victim, f"find / -path /proc -prune -o -name '{name_pattern}' -print 2>/dev/null; true", timeout_ms=120_000)
    assert found["stdout"].strip() == "", f"host secret files found by name: {found['stdout']}"
    # The needles travel in the environment: the sandbox never gets them on a command line.
    needles = {f"NEEDLE{i}": c for i, c in enumerate([*host_secrets.values(), admin_key, control])}
    patterns = " ".join(f'-e "${name}"' for name in needles)
    grep = node.sh(
        victim,
        f"grep -rl -s -D skip -F --exclude-dir=proc --exclude-dir=usr --exclude-dir=dev --exclude-dir=sys {patterns} / ; true",
        env=needles,
        timeout_ms=120_000,
    )
    hits = set(grep["stdout"].split())
    assert "/home/user/control-file" in hits, f"positive control not found by grep: {grep}"
    assert hits == {"/home/user/control-file"}, f"host secrets found by content in: {hits - {'/home/user/control-file'}}"


def test_sandbox_root_is_not_the_host_root(node, victim):
    host_top = set(os.listdir("/"))
    inside_top = set(node.run(victim, "ls -A /").split())
    assert "work" in host_top and "work" not in inside_top, inside_top
    # The node's state dir and the sandbox's own host directory are not reachable.
    out = node.run(victim, f"ls -d {node.state_dir} {node.state_dir}/sandboxes/{victim}/agent.sock 2>/dev/null; true")
    assert out == "", f"node paths visible inside: {out}"


def test_sandbox_cannot_escape_via_dotdot_symlinks_or_chroot(node, victim):
    baseline = node.run(victim, "ls -A /")
    assert "work" not in baseline.split()
    assert node.run(victim, "rm -f /tmp/x; ln -s / /tmp/x; ls -A /tmp/x/../../..") == baseline
    assert node.run(victim, "ls -A /tmp/x/../../../../../../..") == baseline
    assert node.run(victim, "cd /../../..; pwd; ls -A") == "/\n" + baseline
    # Through /proc's root links: either refused (the agent is not ptrace-readable) or the
    # sandbox's own root, never the host's.
    for path in ("/proc/1/root/", "/proc/self/root/../..", "/proc/1/cwd/../../.."):
        res = node.sh(victim, f"ls -A {path}")
        if res["exit_code"] == 0:
            assert res["stdout"] == baseline, f"{path} lists another root: {res['stdout']}"
        else:
            assert "denied" in res["stderr"].lower() or "no such" in res["stderr"].lower(), res
    res = node.sh(victim, "readlink /proc/1/root")
    assert res["exit_code"] != 0 or res["stdout"] == "/\n", res

    # The classic chroot escape: chroot into a subdirectory while keeping a handle on the
    # old root, then walk up. With pivot_root (and the old root detached) it ends at the
    # sandbox's own root.
    escaped = py(
        node,
        victim,
        """
import json, os
os.makedirs('/tmp/jail', exist_ok=True)
fd = os.open('/', os.O_RDONLY)
os.chroot('/tmp/jail')
os.fchdir(fd)
for _ in range(64):
    os.chdir('..')
os.chroot('.')
print(json.dumps(sorted(os.listdir('/'))))
""",
    )
    assert sorted(escaped) == sorted(baseline.split()), f"chroot escape reached another root: {escaped}"

    # A symlink pointing at a host path resolves inside the sandbox.
    probe = f"ai2in-probe-{random_token(8)}"
    res = node.sh(victim, f"ln -sf /etc/{probe} /tmp/l-{probe}; echo pwned > /tmp/l-{probe}; cat /etc/{probe}")
    try:
        assert not os.path.exists(f"/etc/{probe}"), "a write through a symlink landed on the host"
    finally:
        Path(f"/etc/{probe}").unlink(missing_ok=True)
    del res


def test_sandbox_cannot_write_the_hosts_usr(node, victim):
    probe = f"ai2in-probe-{random_token(8)}"
    targets = [f"/usr/{probe}", f"/usr/local/{probe}", f"/usr/bin/{probe}"]
    try:
        for user in (None, "user"):
            body = {"user": user} if user else {}
            for target in targets:
                res = node.sh(victim, f"echo pwned > {target}", **body)
                assert res["exit_code"] != 0, f"wrote {target} inside (as {user or 'root'}): {res}"
                assert not os.path.exists(target), f"{target} appeared on the host"
        res = node.sh(victim, "touch /usr/bin/env")
        assert res["exit_code"] != 0, "root inside may change the image's read-only files"
    finally:
        for target in targets:
            Path(target).unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# pid namespace


def test_sandbox_cannot_see_or_kill_host_processes(node, victim, host_process):
    hostpid, marker, proc = host_process
    listing = node.sh(victim, "ps -eo pid,args; cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
    assert listing["exit_code"] == 0, listing
    assert marker not in outputs(listing), "a host process is visible inside"
    assert "serve" not in listing["stdout"], "the node process is visible inside"
    n_inside = len([p for p in node.run(victim, "ls /proc").split() if p.isdigit()])
    n_host = len([p for p in os.listdir("/proc") if p.isdigit()])
    assert n_inside < 30 and n_inside < n_host, f"{n_inside} processes visible inside (host: {n_host})"
    # (Host and sandbox pid numbers are different spaces; a sandbox process may by chance
    # carry the host pid's number, in which case its kill proves nothing.)
    res = node.sh(victim, f"if [ -e /proc/{hostpid} ]; then echo COLLISION; else kill -9 {hostpid}; fi")
    if "COLLISION" not in res["stdout"]:
        assert res["exit_code"] != 0, f"kill of host pid {hostpid} reported success: {res}"
    found = py(node, victim, f"""
import json, os
if os.path.exists('/proc/{hostpid}'):
    r = 'collision'
else:
    try:
        os.kill({hostpid}, 9); r = 'signalled'
    except ProcessLookupError:
        r = 'ESRCH'
    except PermissionError:
        r = 'EPERM'
print(json.dumps(r))
""")
    assert found in ("ESRCH", "EPERM", "collision"), f"os.kill of a host pid from inside: {found}"
    time.sleep(0.2)
    assert proc.poll() is None and pid_alive(hostpid), "the host process was killed from inside"


def test_kill_all_from_inside_spares_host_and_agent(node, throwaway, host_process):
    hostpid, _marker, proc = host_process
    sid = throwaway()
    res = node.sh(sid, "kill -9 -1; kill -9 1; echo survived")
    assert "survived" in res["stdout"], res
    time.sleep(0.2)
    assert proc.poll() is None, "kill -1 inside killed a host process"
    assert node.running and node.healthy(), "kill -1 inside hurt the node"
    assert node.run(sid, "echo agent-alive") == "agent-alive\n", "root inside can kill the sandbox's agent"


# ---------------------------------------------------------------------------------------------
# devices and mounts


def test_sandbox_cannot_mount_the_host_disk(node, victim):
    host_mounts = Path("/proc/self/mountinfo").read_text()
    blocks = node.run(victim, "find /dev -type b 2>/dev/null; ls -A /dev")
    assert not [l for l in blocks.splitlines() if l.startswith("/dev/")], f"block devices inside: {blocks}"
    for dev in ("vda", "sda", "nvme0n1", "xvda", "loop0", "mem", "kmem", "port"):
        assert dev not in blocks.split(), f"/dev/{dev} exists inside"

    attempts = [
        "mount /dev/vda /mnt",
        "mount -t ext4 /dev/vda /mnt",
        "mount -t proc proc /mnt",
        "mount -t tmpfs tmpfs /mnt",
        "mount --bind / /mnt",
        "mount -o remount,rw /usr",
    ]
    for attempt in attempts:
        res = node.sh(victim, attempt)
        assert res["exit_code"] != 0, f"`{attempt}` succeeded inside: {res}"
    assert node.run(victim, "ls -A /mnt") == "", "something got mounted on /mnt"
    probe = f"/usr/ai2in-after-remount-{random_token(8)}"
    try:
        assert node.sh(victim, f"touch {probe}")["exit_code"] != 0, "/usr became writable"
        assert not os.path.exists(probe)
    finally:
        Path(probe).unlink(missing_ok=True)

    # The raw syscall, for tmpfs (which a user-namespace root could mount if nothing
    # filtered it) and for the host disk.
    errs = py(node, victim, """
import ctypes, json
libc = ctypes.CDLL(None, use_errno=True)
out = {}
for name, src, fstype in [('tmpfs', b'none', b'tmpfs'), ('proc', b'proc', b'proc'), ('disk', b'/dev/vda', b'ext4')]:
    ctypes.set_errno(0)
    r = libc.mount(src, b'/mnt', fstype, 0, None)
    out[name] = [r, ctypes.get_errno()]
print(json.dumps(out))
""")
    for name, (ret, err) in errs.items():
        assert ret == -1, f"mount({name}) succeeded inside"
    assert errs["tmpfs"][1] == EPERM and errs["proc"][1] == EPERM, errs
    assert Path("/proc/self/mountinfo").read_text().count("\n") == host_mounts.count("\n"), "the host's mount table changed"


def test_sandbox_cannot_create_device_nodes(node, victim):
    for cmd, path in [("mknod /tmp/sda b 8 0", "/tmp/sda"), ("mknod /tmp/mem c 1 1", "/tmp/mem"), ("mknod /tmp/vda b 253 0", "/tmp/vda")]:
        res = node.sh(victim, cmd)
        assert res["exit_code"] != 0, f"`{cmd}` succeeded: {res}"
        assert node.sh(victim, f"test -e {path}")["exit_code"] != 0
    errno_ = py(node, victim, """
import errno, json, os, stat
try:
    os.mknod('/tmp/sdb', 0o600 | stat.S_IFBLK, os.makedev(8, 16)); r = 0
except OSError as e:
    r = e.errno
print(json.dumps(r))
""")
    assert errno_ == EPERM, f"mknod of a block device: errno {errno_}"


def test_sandbox_cannot_trigger_sysrq_or_read_kernel_memory(node, victim):
    res = node.sh(victim, "echo h > /proc/sysrq-trigger")  # `h` only prints help, even if it got through
    assert res["exit_code"] != 0, f"/proc/sysrq-trigger is writable inside: {res}"

    kcore = node.sh(victim, "head -c 4096 /proc/kcore 2>/dev/null | wc -c")
    assert kcore["stdout"].strip() in ("0", ""), f"read {kcore['stdout'].strip()} bytes of /proc/kcore"
    for masked in ("keys", "timer_list", "sched_debug", "latency_stats", "kpageflags"):
        n = node.run(victim, f"cat /proc/{masked} 2>/dev/null | wc -c").strip()
        assert n == "0", f"/proc/{masked} is not masked ({n} bytes readable)"
    addrs = node.run(victim, "cat /proc/kallsyms 2>/dev/null | head -200 | cut -d' ' -f1 | sort -u")
    assert all(set(a) <= {"0"} for a in addrs.split()), "kernel symbol addresses readable inside"

    # /proc/sys is read-only: writing the host's current value changes nothing even if it
    # got through, and must fail.
    knobs = [k for k in ("kernel/sysrq", "vm/swappiness", "kernel/printk_ratelimit", "vm/overcommit_ratio")
             if Path(f"/proc/sys/{k}").exists()]
    assert knobs, "none of the probed /proc/sys knobs exists on this host"
    for knob in knobs:
        current = Path(f"/proc/sys/{knob}").read_text().strip()
        res = node.sh(victim, f"echo '{current}' > /proc/sys/{knob}")
        assert res["exit_code"] != 0, f"/proc/sys/{knob} is writable inside"
        assert Path(f"/proc/sys/{knob}").read_text().strip() == current
    res = node.sh(victim, "echo 1 > /proc/sys/vm/drop_caches")
    assert res["exit_code"] != 0, "/proc/sys/vm/drop_caches is writable inside"


def test_sandbox_cannot_load_kernel_modules(node, victim):
    modules = Path("/proc/modules")  # absent on kernels built without module support
    before = modules.read_text() if modules.exists() else None
    errs = py(node, victim, """
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *args)
    return [r, ctypes.get_errno()]
image = ctypes.create_string_buffer(b'\\x7fELF' + b'\\0' * 4092)
empty = ctypes.c_char_p(b'')
fd = os.open('/dev/null', os.O_RDONLY)
out = {
    'init_module': call(175, image, ctypes.c_ulong(4096), empty),
    'finit_module': call(313, ctypes.c_int(fd), empty, ctypes.c_int(0)),
    'delete_module': call(176, ctypes.c_char_p(b'ai2in_e2e_no_such_module'), ctypes.c_uint(0o4000)),
}
print(json.dumps(out))
""")
    for name, (ret, err) in errs.items():
        assert ret == -1 and err == EPERM, f"{name}: returned {ret}, errno {err} (want EPERM)"
    for tool in ("insmod", "modprobe"):
        res = node.sh(victim, f"command -v {tool} >/dev/null || exit 0; {tool} ai2in_e2e_no_such_module")
        if res["stdout"] or res["stderr"]:
            assert res["exit_code"] != 0
    if before is not None:
        assert modules.read_text() == before, "the host's module list changed"


# ---------------------------------------------------------------------------------------------
# user namespace and privileges


def test_nested_user_namespace_gains_nothing_on_the_host(node, victim, host_secrets):
    secret_paths = " ".join(host_secrets)
    res = node.sh(
        victim,
        "unshare -U -r -m sh -c '"
        f"id -u; cat {secret_paths} 2>/dev/null; "
        "mount /dev/vda /mnt 2>/dev/null && echo HOSTDISK-MOUNTED; "
        "mount -t ext4 /dev/vda /mnt 2>/dev/null && echo HOSTDISK-MOUNTED; "
        "ls -A /mnt'",
    )
    text = outputs(res)
    for content in host_secrets.values():
        assert content not in text, "a nested user namespace reached a host file"
    assert "HOSTDISK-MOUNTED" not in text, "a nested user namespace mounted the host disk"

    # The same from Python, in a child: if unshare is allowed at all, it must not open a way
    # to the host's files or disk.
    paths = json.dumps(list(host_secrets))
    result = py(node, victim, f"""
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    out = {{}}
    # os.unshare needs Python 3.12; the image may have an older one.
    ctypes.set_errno(0)
    if libc.unshare(0x10000000 | 0x00020000) == 0:  # CLONE_NEWUSER | CLONE_NEWNS
        out['unshare'] = 'allowed'
        out['read'] = []
        for p in {paths}:
            try:
                out['read'].append(open(p).read())
            except OSError:
                pass
        out['mount_disk'] = libc.mount(b'/dev/vda', b'/mnt', b'ext4', 0, None)
    else:
        out['unshare'] = ctypes.get_errno()
    os.write(w, json.dumps(out).encode())
    os._exit(0)
os.close(w)
os.waitpid(pid, 0)
print(os.read(r, 65536).decode())
""")
    if result["unshare"] == "allowed":
        for content in host_secrets.values():
            assert all(content not in x for x in result["read"]), "nested user namespace read a host file"
        assert result["mount_disk"] != 0, "nested user namespace mounted the host disk"
    else:
        assert result["unshare"] == EPERM, result


def test_sandbox_processes_have_no_dangerous_capabilities_and_seccomp(node, victim):
    dangerous = {"CAP_SYS_ADMIN": 21, "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_PTRACE": 19,
                 "CAP_SYS_BOOT": 22, "CAP_MKNOD": 27, "CAP_NET_ADMIN": 12, "CAP_SYS_TIME": 25}
    for user in (None, "user"):
        status = node.run(victim, "cat /proc/self/status", **({"user": user} if user else {}))
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        assert fields.get("Seccomp", "").strip() == "2", f"seccomp filter not active ({user or 'root'}): {fields.get('Seccomp')}"
        assert fields.get("NoNewPrivs", "").strip() == "1", f"no_new_privs not set ({user or 'root'})"
        for capset in ("CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh"):
            value = int(fields[capset].strip(), 16)
            for name, bit in dangerous.items():
                assert not value & (1 << bit), f"{capset} of {user or 'root'} holds {name}"
        if user == "user":
            assert int(fields["CapEff"].strip(), 16) == 0, "the unprivileged user has effective capabilities"


def test_seccomp_refuses_dangerous_syscalls_with_eperm(node, victim):
    errs = py(node, victim, """
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
L = ctypes.c_long
def call(nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(L(nr), *[a if not isinstance(a, int) else L(a) for a in args])
    return [r, ctypes.get_errno()]
s = lambda b: ctypes.c_char_p(b)
out = {
    'kexec_load': call(246, 0, 0, 0, 0),
    'kexec_file_load': call(320, -1, -1, 0, s(b''), 0),
    'bpf': call(321, 0, 0, 0),
    # KEYCTL_GET_KEYRING_ID of the session keyring: succeeds unless filtered.
    'keyctl': call(250, 0, -3, 0),
    # A NULL payload: EFAULT if this got past a filter, never a stored key.
    'add_key': call(248, s(b'user'), s(b'ai2in-e2e'), 0, 1, -3),
    'request_key': call(249, s(b'user'), s(b'ai2in-e2e'), 0, 0),
    'perf_event_open': call(298, 0, 0, -1, -1, 0),
    'open_by_handle_at': call(304, -100, 0, 0),
    'setns': call(308, -1, 0),
    # An invalid clock id: EINVAL if this got past a filter, never a clock change.
    'clock_settime': call(227, 9999, 0),
    'swapon': call(167, s(b'/nonexistent-ai2in'), 0),
    'umount2': call(166, s(b'/tmp/ai2in-not-a-mount'), 0),
    'pivot_root': call(155, s(b'/tmp'), s(b'/tmp')),
    # Last: if it got through, it would change this process's namespace.
    'unshare(CLONE_NEWUSER)': call(272, 0x10000000),
}
print(json.dumps(out))
""")
    bad = {name: v for name, v in errs.items() if v != [-1, EPERM]}
    assert not bad, f"syscalls not refused with EPERM (ret, errno): {bad}"
    # The filter does not break ordinary work.
    assert node.run(victim, "python3 -c 'import os, subprocess; print(subprocess.check_output([\"echo\", \"ok\"]).decode().strip())'") == "ok\n"


def test_root_inside_is_an_unprivileged_uid_on_the_host_distinct_per_sandbox(node, victim, neighbour):
    ranges = {}
    for sid in (victim, neighbour):
        pid = agent_pid(sid)
        uids = host_uids(pid)
        assert all(u >= 65536 for u in uids), f"agent of {sid} runs as host uid {uids}"
        inside, outside, count = (int(x) for x in Path(f"/proc/{pid}/uid_map").read_text().split()[:3])
        assert inside == 0 and outside >= 65536, f"uid_map of {sid}: 0 → {outside}"
        assert uids[0] == outside
        ranges[sid] = (outside, outside + count)
        gid_line = Path(f"/proc/{pid}/status").read_text().split("Gid:")[1].split("\n")[0]
        assert all(int(g) >= 65536 for g in gid_line.split()), f"agent of {sid} has host gids {gid_line}"
    (a0, a1), (b0, b1) = ranges.values()
    assert a1 <= b0 or b1 <= a0, f"uid ranges of two sandboxes overlap: {ranges}"

    # Everything in the sandbox, not just the agent, runs unprivileged on the host, and what
    # root creates inside belongs to the mapped uid.
    node.run(victim, "sleep 120 </dev/null >/dev/null 2>&1 & touch /root/made-by-root")
    for pid in cgroup_pids(victim):
        try:
            assert all(u != 0 for u in host_uids(pid)), f"process {pid} of the sandbox runs as host root"
        except FileNotFoundError:
            pass
    st = os.stat(f"/proc/{agent_pid(victim)}/root/root/made-by-root")
    assert st.st_uid == ranges[victim][0], f"file of root inside is host uid {st.st_uid}"


# ---------------------------------------------------------------------------------------------
# other sandboxes


def test_sandbox_cannot_read_another_sandboxs_files_or_see_its_processes(node, victim, neighbour):
    secret = "neighbour-secret-" + random_token(24)
    marker = "ai2in-e2e-neigh-" + random_token(10)
    node.run(
        neighbour,
        f"for d in /home/user /tmp /root /dev/shm /var/tmp; do echo {secret} > $d/neigh-secret; done; "
        f"setsid bash -c 'exec -a {marker} sleep 600' </dev/null >/dev/null 2>&1 &",
    )
    # Positive controls: the neighbour itself sees both.
    assert secret in node.run(neighbour, "cat /home/user/neigh-secret")
    wait_until(lambda: marker in node.run(neighbour, "ps -eo args"), 10, "marker process not running in the neighbour")

    # The secret travels in the environment, so that the command line (visible to `ps`)
    # does not hold it.
    res = node.sh(
        victim,
        'grep -rs -D skip -F -e "$NEEDLE" /home /tmp /root /var /run /opt /srv /mnt /dev/shm /etc; '
        "cat /proc/[0-9]*/root/home/user/neigh-secret /proc/[0-9]*/root/tmp/neigh-secret; "
        f"cat {node.state_dir}/sandboxes/{neighbour}/root/*/home/user/neigh-secret; "
        f"find / -path /proc -prune -o -name neigh-secret -print; "
        "ps -eo args; cat /proc/[0-9]*/cmdline | tr '\\0' ' '; echo END",
        env={"NEEDLE": secret},
        timeout_ms=120_000,
    )
    assert "END" in res["stdout"], res
    text = outputs(res)
    assert secret not in text, "a sandbox read another sandbox's file"
    assert marker not in text, "a sandbox sees another sandbox's process"
    # Killing the neighbour's processes by host pid does nothing either.
    host_pids = [p for p in cgroup_pids(neighbour)]
    node.sh(victim, "kill -9 " + " ".join(map(str, host_pids)) + " 2>/dev/null; true")
    assert marker in node.run(neighbour, "ps -eo args"), "the neighbour's process was killed from another sandbox"


# ---------------------------------------------------------------------------------------------
# limits


def test_memory_limit_kills_the_hog_and_leaves_node_and_sandbox_healthy(node, throwaway):
    sid = throwaway(memory_bytes=64 * MIB)
    if cgroup_v2():
        limit = cgroup_file(sid, "memory", "memory.max").read_text().strip()
    else:
        limit = cgroup_file(sid, "memory", "memory.limit_in_bytes").read_text().strip()
    assert int(limit) == 64 * MIB, f"memory limit in the cgroup is {limit}"

    res = node.sh(sid, "python3 -c 'x = b\"x\" * (256 << 20); print(\"allocated\", len(x))'", timeout_ms=60_000)
    assert "allocated" not in res["stdout"], f"allocated 256 MiB under a 64 MiB limit: {res}"
    assert res["exit_code"] != 0, res
    assert node.healthy(), "the node went down with the sandbox's OOM"
    wait_until(lambda: node.sh(sid, "echo alive")["stdout"] == "alive\n", 20, "sandbox unusable after the OOM kill")


def test_fork_bomb_is_bounded_by_the_pids_limit(node, throwaway, victim):
    sid = throwaway()
    pids_max = cgroup_file(sid, "pids", "pids.max").read_text().strip()
    assert pids_max != "max" and 0 < int(pids_max) <= 65536, f"pids.max of the sandbox is {pids_max!r}"

    # `exec sleep` keeps the command running without needing a fork, so that the bomb runs
    # until the timeout kills the whole process group.
    res = node.sh(sid, FORK_BOMB, timeout_ms=8_000)
    assert res["exit_code"] is None and res.get("error"), f"the bomb should have been stopped by the timeout: {res}"
    # The workload runs in the sandbox group's `work` subgroup, whose pids.max is a little
    # lower than the sandbox's (the agent keeps a reserve): either may count the hits.
    hits = 0
    for events in (cgroup_file(sid, "pids", "pids.events"), cgroup_file(sid, "pids", "work/pids.events")):
        if events.exists():
            hits += int(dict(l.split() for l in events.read_text().splitlines()).get("max", "0"))
    assert hits > 0, "the fork bomb never reached pids.max: was it bounded by something else?"
    assert node.healthy(), "the node suffered from the fork bomb"
    assert node.run(victim, "echo fine") == "fine\n", "another sandbox suffered from the fork bomb"
    wait_until(lambda: node.sh(sid, "echo recovered", timeout_ms=10_000)["stdout"] == "recovered\n", 30,
               "the bombed sandbox did not recover")
    # Killed members may take a moment to be reaped; survivors would keep the count up.
    current = cgroup_file(sid, "pids", "pids.current")
    wait_until(lambda: int(current.read_text()) < 50, 20,
               lambda: f"{current.read_text().strip()} tasks still in the sandbox after the bomb was killed")


def test_fork_bomb_in_a_small_memory_sandbox_leaves_its_agent_manageable(node, throwaway):
    # With little memory the bomb hits the memory limit before the pids limit: the OOM
    # killer must pick the workload, and the agent (protected, per the architecture) must
    # still answer this call and the next ones.
    sid = throwaway(memory_bytes=64 * MIB)
    r = node.shell_raw(sid, FORK_BOMB, timeout_ms=8_000)
    assert r.status_code == 200, f"the agent did not survive a fork bomb under a 64 MiB limit: {r.status_code} {r.text}"
    # Stopped by the timeout (null), or its bash was picked by the OOM killer (137).
    assert r.json()["exit_code"] in (None, 137), r.json()
    assert node.healthy()
    # The agent keeps answering within each call's timeout, whatever the bomb's remains do
    # to the commands themselves.
    for _ in range(3):
        r = node.shell_raw(sid, "echo recovered", timeout_ms=5_000)
        assert r.status_code == 200, f"the agent stopped answering: {r.status_code} {r.text}"
    assert node.sandbox(sid).json()["status"] == "running"
    assert node.delete(f"/v1/sandboxes/{sid}").status_code == 204


def test_disk_limit_stops_writes_with_no_space_left(node, throwaway):
    sid = throwaway(disk_bytes=32 * MIB)
    for target in ("/home/user/big", "/tmp/big"):
        res = node.sh(sid, f"dd if=/dev/zero of={target} bs=1M count=100", timeout_ms=60_000)
        assert res["exit_code"] != 0, f"wrote 100 MiB to {target} under a 32 MiB disk limit: {res}"
        assert "No space left" in res["stderr"], res["stderr"]
        size = int(node.run(sid, f"stat -c %s {target}"))
        assert size <= 32 * MIB, f"{target} grew to {size} bytes"
        node.run(sid, f"rm -f {target}")
    res = node.sh(sid, "dd if=/dev/zero of=/dev/shm/big bs=1M count=100")
    assert res["exit_code"] != 0, "/dev/shm is unbounded"
    node.run(sid, "rm -f /dev/shm/big")
    # Space is given back, and nothing of it was written into the node's state dir.
    assert node.run(sid, "dd if=/dev/zero of=/home/user/small bs=1M count=8 2>/dev/null && echo ok") == "ok\n"
    used = 0
    for root, _dirs, files in os.walk(Path(node.state_dir, "sandboxes", sid)):
        for f in files:
            try:
                used += os.lstat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass
    assert used < 4 * MIB, f"the sandbox's data landed on the host disk ({used} bytes in its state dir)"


# ---------------------------------------------------------------------------------------------
# network


def test_sandbox_network_has_only_its_own_links_and_cannot_reach_host_services(node, victim):
    # Its own namespace: loopback and its one link, none of the host's interfaces.
    links = node.run(victim, "ip -o link show | awk -F': ' '{print $2}'").split()
    assert [l.split("@")[0] for l in links] == ["lo", "eth0"], f"interfaces inside: {links}"

    host_tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    host_tcp.bind(("127.0.0.1", 0))
    host_tcp.listen(8)
    abstract = "\0ai2in-e2e-" + random_token(10)
    host_unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    host_unix.bind(abstract)
    host_unix.listen(8)
    try:
        # Positive control: the host reaches both.
        socket.create_connection(host_tcp.getsockname(), timeout=2).close()
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(abstract)
        c.close()

        result = py(node, victim, f"""
import json, socket
out = {{'ifaces': [n for _, n in socket.if_nameindex()]}}
for name, port in [('node_api', {node.port}), ('host_tcp', {host_tcp.getsockname()[1]})]:
    s = socket.socket(); s.settimeout(3)
    try:
        s.connect(('127.0.0.1', port)); out[name] = 'connected'
    except OSError as e:
        out[name] = type(e).__name__
    finally:
        s.close()
u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    u.connect({abstract!r}); out['abstract_unix'] = 'connected'
except OSError as e:
    out['abstract_unix'] = type(e).__name__
print(json.dumps(out))
""")
    finally:
        host_tcp.close()
        host_unix.close()
    assert result["ifaces"] == ["lo", "eth0"], result
    for name in ("node_api", "host_tcp", "abstract_unix"):
        assert result[name] != "connected", f"the sandbox reached {name}: {result}"
    curl = node.sh(victim, f"curl -sS -m 3 http://127.0.0.1:{node.port}/healthz")
    assert curl["exit_code"] != 0, f"the node's API answered from inside: {curl}"
