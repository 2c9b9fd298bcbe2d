"""Storage attacks: real attempts, as root inside a sandbox (or through what a sandbox can
put into a snapshot), against the defences of volumes, disks and snapshots. Each test says
which defence it checks; each would fail if that defence were removed. Each asserts that the
attack fails *and* that the host (or the other sandbox) is untouched.

Nothing here can harm the host even if a defence is missing: every host path a test names is
new (a random token) and removed afterwards, mounts are tried on /mnt inside, and the only
host files read are ones the test wrote.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from e2e_util import (
    MIB,
    agent_pid,
    assert_gone_from_host,
    files_under,
    mountinfo_lines,
    random_token,
    wait_until,
)
from test_storage import (  # noqa: F401 - track and t are fixtures of these tests too
    attached,
    error_of,
    get_volume,
    loop_backing_files,
    mount,
    outputs,
    snapshot_of,
    t,
    tenant_key,
    track,
    volume_files,
    wait_attached,
)

EPERM = 1
EROFS = 30


def py(node, sid, script, key=None, user=None, env=None, timeout_ms=60_000):
    """Runs a Python script inside; its last stdout line must be JSON, which is returned."""
    body = {"stdin": script, "timeout_ms": timeout_ms}
    if user:
        body["user"] = user
    if env:
        body["env"] = env
    res = node.sh(sid, "python3 -", key=key, **body)
    assert res["exit_code"] == 0, f"script failed: {res}"
    return json.loads(res["stdout"].strip().splitlines()[-1])


def node_loops(state_dir) -> dict[str, str]:
    """Loop devices whose backing file is in the node's state dir: /dev/loopN → file."""
    state = os.path.realpath(state_dir) + "/"
    return {d: f for d, f in loop_backing_files().items() if f.startswith(state)}


# ---------------------------------------------------------------------------------------------
# a volume path through a symlink of the image


@pytest.fixture(scope="module")
def link_image(node):
    """A snapshot whose /home/user holds symlinks to host-looking places: (key, image, token,
    volume id, a world-writable host directory that `link-last` names)."""
    key = tenant_key(node)
    token = random_token(10).lower()
    host_dir = Path(f"/tmp/ai2in-linkvol-{token}")
    host_dir.mkdir()
    os.chmod(host_dir, 0o777)  # an escaped mkdir by the sandbox's unprivileged uid would work here
    sid = node.create_sandbox(key=key)["id"]
    node.run(sid, "set -e; cd /home/user; ln -s /etc link-etc; ln -s /tmp link-tmp; "
                  f"ln -s ../../tmp link-rel; ln -s {host_dir} link-last; mkdir real; "
                  "ln -s /home/user/real link-inside", key=key)
    img = snapshot_of(node, sid, key)
    node.delete(f"/v1/sandboxes/{sid}", key=key)
    r = node.post("/v1/volumes", key=key, json={"size_bytes": 16 * MIB})
    assert r.status_code == 201, r.text
    vid = r.json()["id"]
    yield key, img, token, vid, host_dir
    node.delete(f"/v1/images/{img['id']}", key=key)
    node.delete(f"/v1/volumes/{vid}", key=key)
    shutil.rmtree(host_dir, ignore_errors=True)


LINK_CASES = {
    # path inside → host paths that must not appear (format: token, host_dir)
    "absolute-etc": ("/home/user/link-etc/ai2in-vol-{token}", ["/etc/ai2in-vol-{token}"]),
    "absolute-tmp": ("/home/user/link-tmp/ai2in-vol-{token}/deeper", ["/tmp/ai2in-vol-{token}"]),
    "relative": ("/home/user/link-rel/ai2in-vol-{token}", ["/tmp/ai2in-vol-{token}"]),
    "last-component": ("/home/user/link-last", ["{host_dir}/lost+found"]),
    "through-host-dir": ("/home/user/link-last/ai2in-vol-{token}", ["{host_dir}/ai2in-vol-{token}"]),
    "inside-target": ("/home/user/link-inside/x", []),
}


@pytest.mark.parametrize("case", list(LINK_CASES))
def test_a_volume_path_through_a_symlink_of_the_image_is_400_and_creates_nothing(node, link_image, case):
    # Defence: the mount point is made in the new root component by component with
    # openat2(RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH) (rootfs.rs make_dirs_in_root). Before
    # pivot_root an absolute symlink followed would name the *host's* /tmp or /etc: without
    # the defence `mkdir` would create ai2in-vol-TOKEN there (as the sandbox's uid, which may
    # write /tmp and the 0777 host_dir) and the create would answer 201.
    key, img, token, vid, host_dir = link_image
    path, host_paths = LINK_CASES[case]
    path = path.format(token=token, host_dir=host_dir)
    host_paths = [Path(p.format(token=token, host_dir=host_dir)) for p in host_paths]
    err = error_of(node.post("/v1/sandboxes", key=key,
                             json={"image": img["id"], "volumes": [mount(vid, path)]}), 400, "invalid_request")
    assert path in err, f"the sentence must name the path: {err}"
    for p in host_paths:
        assert not os.path.lexists(p), f"the create made {p} on the host"
    assert os.listdir(host_dir) == [], f"the create wrote into {host_dir}: {os.listdir(host_dir)}"
    assert not mountinfo_lines(token), mountinfo_lines(token)
    assert attached(node, vid, key) == []
    assert node.get("/v1/sandboxes", key=key).json()["sandboxes"] == [], "the refused create left a sandbox"


# ---------------------------------------------------------------------------------------------
# block devices


BLOCK_PROBE = r"""
import ctypes, json, os, stat
libc = ctypes.CDLL(None, use_errno=True)
out = {}
def read(p):
    try:
        with open(p) as f:
            return f.read()
    except OSError as e:
        return "ERR %d" % e.errno
out["partitions"] = read("/proc/partitions")
out["diskstats"] = read("/proc/diskstats")
out["dev"] = sorted(os.listdir("/dev"))
blocks = []
for root, dirs, files in os.walk("/dev"):
    for n in dirs + files:
        try:
            if stat.S_ISBLK(os.lstat(os.path.join(root, n)).st_mode):
                blocks.append(os.path.join(root, n))
        except OSError:
            pass
out["block_nodes"] = blocks
sysfs = []
for d in ("/sys/block", "/sys/class/block", "/sys/dev/block"):
    try:
        sysfs += [d + "/" + n for n in os.listdir(d)]
    except OSError:
        pass
out["sysfs"] = sysfs
opened = {}
for dev in os.environ["LOOPS"].split() + ["/dev/loop-control"]:
    try:
        fd = os.open(dev, os.O_RDONLY)
        os.close(fd)
        opened[dev] = 0
    except OSError as e:
        opened[dev] = e.errno
out["open"] = opened
made = {}
for n in os.environ["LOOP_NUMBERS"].split():
    p = "/tmp/blk-" + n
    try:
        os.mknod(p, 0o600 | stat.S_IFBLK, os.makedev(7, int(n)))
        made[n] = 0
        os.unlink(p)
    except OSError as e:
        made[n] = e.errno
out["mknod"] = made
mounted = {}
for dev in os.environ["LOOPS"].split()[:4]:
    ctypes.set_errno(0)
    r = libc.mount(dev.encode(), b"/mnt", b"ext4", 1, None)  # MS_RDONLY
    mounted[dev] = [r, ctypes.get_errno()]
out["mount"] = mounted
print(json.dumps(out))
"""


def test_a_sandbox_cannot_see_or_open_the_hosts_block_devices(node, t):
    # Defences: /proc/partitions and /proc/diskstats masked by /dev/null (rootfs.rs
    # MASKED_FILES), a minimal /dev without block devices, no CAP_MKNOD for block devices
    # and no mount of a block device (capabilities, seccomp). Without them the probe would
    # list the loop devices of every sandbox's disk, or open or mount one.
    key = tenant_key(node)
    v = t.volume(key, size_bytes=16 * MIB)
    sid = t.sid(key, volumes=[mount(v["id"])])
    node.run(sid, "echo x > /data/x && echo y > /home/user/y", key=key)
    loops = sorted(loop_backing_files())
    mine = node_loops(node.state_dir)
    # Positive control: the host sees this node's disks on loop devices.
    assert mine and any(v["id"] in f for f in mine.values()), \
        f"precondition: the sandbox's volume is on a loop device: {loop_backing_files()}"
    numbers = [re.sub(r"\D", "", d) for d in loops]
    out = py(node, sid, BLOCK_PROBE, key=key,
             env={"LOOPS": " ".join(loops), "LOOP_NUMBERS": " ".join(numbers)})
    host_disks = [line.split()[-1] for line in Path("/proc/partitions").read_text().splitlines()[2:] if line.split()]
    for name in ("partitions", "diskstats"):
        text = out[name]
        assert not [d for d in host_disks if re.search(rf"\b{re.escape(d)}\b", text)], \
            f"/proc/{name} inside lists host block devices: {text[:500]!r}"
    assert not [n for n in out["dev"] if n.startswith(("loop", "vd", "sd", "nvme", "xvd", "dm-"))], out["dev"]
    assert out["block_nodes"] == [], f"block devices in /dev inside: {out['block_nodes']}"
    assert not [p for p in out["sysfs"] if "loop" in p], f"sysfs inside lists loop devices: {out['sysfs']}"
    assert not [d for d, e in out["open"].items() if e == 0], f"opened inside: {out['open']}"
    assert all(e == EPERM for e in out["mknod"].values()), f"mknod of loop devices: {out['mknod']}"
    assert all(r == -1 for r, _ in out["mount"].values()), f"mounted a loop device inside: {out['mount']}"
    for cmd in ("losetup -a", "losetup -f", f"mount /dev/{Path(loops[0]).name} /mnt", "mount -t ext4 /dev/vda /mnt"):
        res = node.sh(sid, cmd, key=key)
        assert res["exit_code"] != 0 or res["stdout"].strip() == "", f"`{cmd}` inside: {res}"
    assert node.run(sid, "ls -A /mnt", key=key) == ""
    # Nothing of the sandbox's disk or volume is mounted on the host.
    host_mounts = Path("/proc/self/mountinfo").read_text()
    for dev in mine:
        assert f" {dev} " not in host_mounts, f"{dev} ({mine[dev]}) is mounted on the host"


# ---------------------------------------------------------------------------------------------
# read-only volumes stay read-only


REMOUNT_PROBE = r"""
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
out = {}
def call(name, fn):
    ctypes.set_errno(0)
    r = fn()
    out[name] = [r, ctypes.get_errno()]
    return r
MS_RDONLY, MS_REMOUNT, MS_BIND = 1, 32, 4096
AT_FDCWD, AT_EMPTY_PATH, OPEN_TREE_CLONE = -100, 0x1000, 1
class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]
clear_ro = MountAttr(0, 1, 0, 0)  # clear MOUNT_ATTR_RDONLY
call("remount-bind", lambda: libc.mount(None, b"/data", None, MS_REMOUNT | MS_BIND, None))
call("remount", lambda: libc.mount(None, b"/data", None, MS_REMOUNT, None))
call("bind", lambda: libc.mount(b"/data", b"/mnt", None, MS_BIND, None))
call("mount_setattr", lambda: libc.syscall(442, AT_FDCWD, b"/data", 0, ctypes.byref(clear_ro),
                                            ctypes.c_size_t(32)))
fd = call("open_tree", lambda: libc.syscall(428, AT_FDCWD, b"/data", OPEN_TREE_CLONE))
if fd >= 0:
    call("mount_setattr-clone", lambda: libc.syscall(442, fd, b"", AT_EMPTY_PATH, ctypes.byref(clear_ro),
                                                      ctypes.c_size_t(32)))
    try:
        os.close(os.open("pwned-clone", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
        out["write-clone"] = 0
    except OSError as e:
        out["write-clone"] = e.errno
call("fspick", lambda: libc.syscall(433, AT_FDCWD, b"/data", 0))
call("umount", lambda: libc.umount2(b"/data", 2))  # MNT_DETACH
try:
    with open("/data/pwned-direct", "w") as f:
        f.write("x")
    out["write"] = 0
except OSError as e:
    out["write"] = e.errno
print(json.dumps(out))
"""


def test_root_inside_cannot_make_a_read_only_volume_writable(node, t):
    # Defence: the read-only mount attribute set by the node (fsmount MOUNT_ATTR_RDONLY) and
    # no way for root inside to change it: no CAP_SYS_ADMIN over the mount (capabilities,
    # seccomp on mount/mount_setattr/open_tree/fspick; a mount that came from the node is
    # locked). Without it `mount -o remount,rw` or mount_setattr would let the reader write
    # into a volume another sandbox holds read-write.
    key = tenant_key(node)
    v = t.volume(key, size_bytes=16 * MIB)
    writer = t.sid(key, volumes=[mount(v["id"])])
    node.run(writer, "echo original > /data/f && sync", key=key)
    reader = t.sid(key, volumes=[mount(v["id"], read_only=True)])
    for cmd in ("mount -o remount,rw /data", "mount -o remount,rw,bind /data",
                "mount --bind /data /mnt && mount -o remount,rw,bind /mnt && touch /mnt/pwned-bind",
                "umount /data && touch /data/pwned-umount", "umount -l /data"):
        res = node.sh(reader, cmd, key=key)
        assert res["exit_code"] != 0, f"`{cmd}` succeeded in the reader: {res}"
    out = py(node, reader, REMOUNT_PROBE, key=key)
    for name in ("remount-bind", "remount", "bind", "mount_setattr", "open_tree", "fspick", "umount"):
        assert out[name][0] == -1, f"{name} succeeded in the reader: {out}"
    assert out.get("write-clone", EROFS) != 0, f"wrote through a cloned tree: {out}"
    assert out["write"] == EROFS, f"the read-only volume took a write (errno {out['write']}): {out}"
    res = node.sh(reader, "echo pwned > /data/f", key=key)
    assert res["exit_code"] != 0 and "Read-only file system" in outputs(res), res
    assert node.run(reader, "findmnt -n -o OPTIONS /data | tr , '\\n' | grep -x ro", key=key) == "ro\n"
    # The writer's view: nothing changed.
    assert node.run(writer, "cat /data/f; ls -A /data | grep -v lost+found", key=key) == "original\nf\n"


# ---------------------------------------------------------------------------------------------
# another sandbox's volume


def test_a_sandbox_cannot_reach_another_sandboxs_volume(node, t):
    # Defences: the volume is attached only in the mounting sandbox's mount namespace (a
    # detached mount, never on the host or in the state dir's tree), pid namespaces (no
    # /proc/PID/root of the other sandbox), no block device to open. Without them the
    # neighbour would find the secret through /proc/*/root, the host path or the device.
    owner, other = tenant_key(node), tenant_key(node)
    secret = "volume-secret-" + random_token(24)
    name = f"secret-{random_token(8)}"
    v = t.volume(owner, size_bytes=16 * MIB)
    holder = t.sid(owner, volumes=[mount(v["id"])])
    node.run(holder, f"echo {secret} > /data/{name} && sync", key=owner)
    assert node.run(holder, f"cat /data/{name}", key=owner) == secret + "\n"  # positive control
    pid = agent_pid(holder)
    vol_files = " ".join(str(f) for f in volume_files(node.state_dir, v["id"]))
    neighbour = t.sid(other)
    res = node.sh(
        neighbour,
        'grep -rs -D skip -F -e "$NEEDLE" /home /tmp /root /var /run /opt /srv /mnt /dev /etc /data; '
        f"cat /proc/[0-9]*/root/data/{name} /proc/{pid}/root/data/{name} {vol_files} 2>&1; "
        f"ls -A {node.state_dir} {node.state_dir}/volumes 2>&1; echo END",
        key=other, env={"NEEDLE": secret}, timeout_ms=120_000)
    assert "END" in res["stdout"], res
    assert secret not in outputs(res), f"the neighbour reached the volume: {res}"
    found = node.sh(neighbour, f"find / -path /proc -prune -o -name '{name}' -print 2>/dev/null; true",
                    key=other, timeout_ms=120_000)
    assert found["stdout"] == "", f"the neighbour sees the volume's file: {found}"
    # The same, as the volume's tenant, from a sandbox that does not mount it.
    same_tenant = t.sid(owner)
    res = node.sh(same_tenant, f"cat /data/{name} /proc/[0-9]*/root/data/{name} 2>&1; echo END", key=owner)
    assert secret not in outputs(res), res


# ---------------------------------------------------------------------------------------------
# full disks


def test_filling_one_sandboxs_disk_and_volume_spares_the_others_and_the_node(node, t):
    # Defence: each disk and volume is an ext4 of its own size on a loop device of its own,
    # so a full one fills nothing else (not the node's disk, not another sandbox's). Without
    # it (one shared filesystem, or an unbounded layer) the filler would exhaust the space
    # the neighbour and the node write to.
    key = tenant_key(node)
    vf = t.volume(key, size_bytes=16 * MIB)
    vg = t.volume(key, size_bytes=16 * MIB)
    filler = t.sid(key, disk_bytes=32 * MIB, volumes=[mount(vf["id"])])
    other = t.sid(key, volumes=[mount(vg["id"])])
    free_before = shutil.disk_usage(node.state_dir).free
    for target, count in (("/home/user/fill", 64), ("/tmp/fill2", 16), ("/data/fill", 32)):
        res = node.sh(filler, f"dd if=/dev/zero of={target} bs=1M count={count}", key=key, timeout_ms=120_000)
        assert res["exit_code"] != 0 and "No space left on device" in res["stderr"], \
            f"{target}: the full disk took more: {res}"
    # Also out of inodes? Many empty files until the disk says no.
    res = node.sh(filler, "i=0; while [ $i -lt 100000 ] && { true > /home/user/n$i; } 2>/dev/null; do i=$((i+1)); done; "
                          "echo $i", key=key, timeout_ms=120_000)
    assert res["exit_code"] == 0 and int(res["stdout"]) < 100000, res
    assert get_volume(node, vf["id"], key)["used_bytes"] <= 16 * MIB
    free_after = shutil.disk_usage(node.state_dir).free
    assert free_before - free_after < 96 * MIB, \
        f"filling a 32 MiB disk and a 16 MiB volume took {(free_before - free_after) >> 20} MiB of the node's disk"

    # The other sandbox writes on, the node answers, new sandboxes start.
    assert node.run(other, "head -c 8388608 /dev/zero > /home/user/g && head -c 8388608 /dev/zero > /data/g "
                           "&& echo ok", key=key) == "ok\n"
    t0 = time.monotonic()
    assert node.healthy() and node.get("/v1/sandboxes", key=key).status_code == 200
    assert time.monotonic() - t0 < 5, "the API slowed down"
    fresh = t.sid(key, disk_bytes=32 * MIB)
    assert node.run(fresh, "head -c 8388608 /dev/zero > /home/user/h && echo ok", key=key) == "ok\n"
    assert node.run(filler, "echo alive", key=key) == "alive\n"


# ---------------------------------------------------------------------------------------------
# hostile snapshots


def test_a_snapshot_of_hostile_files_cannot_read_the_hosts_secrets(node, t):
    # Defences: a snapshot keeps symlinks as symlinks (resolved later inside the new
    # sandbox's own root, never on the host), takes no device node (none can be made
    # inside), and a setuid-root file is root of the sandbox's user namespace only (an
    # unprivileged uid on the host) while the layer store is root's alone (0700). Without
    # them the new sandbox, or a host user, would read the host's secret through the link or
    # the setuid binary.
    key = tenant_key(node)
    token = random_token(10)
    secret = "host-secret-" + random_token(24)
    root_secret = Path(f"/root/ai2in-snap-secret-{token}")
    tmp_secret = Path(f"/tmp/ai2in-snap-secret-{token}")
    root_secret.write_text(secret + "\n")
    os.chmod(root_secret, 0o600)
    tmp_secret.write_text(secret + "\n")
    os.chmod(tmp_secret, 0o644)
    try:
        a = t.sid(key)
        res = node.sh(a, f"""
cp /usr/bin/cat /opt/suidcat-{token} && chmod 4755 /opt/suidcat-{token}
mknod /opt/blk-{token} b 8 0; mknod /opt/chr-{token} c 1 1
mkfifo /opt/fifo-{token}
ln -s /etc/shadow /opt/shadow-link
ln -s ../../../../../../../../etc/shadow /opt/deep-shadow-link
ln -s /proc/1/root/etc/shadow /opt/proc-shadow-link
ln -s {root_secret} /opt/root-secret-link
ln -s {tmp_secret} /opt/tmp-secret-link
ln -s ../../../../../../../..{tmp_secret} /opt/deep-secret-link
echo done""", key=key)
        assert res["stdout"].endswith("done\n"), res
        assert node.sh(a, f"test -e /opt/blk-{token} || test -e /opt/chr-{token}", key=key)["exit_code"] != 0, \
            "precondition: no device node can be made inside"
        img = t.snapshot(a, key)

        # The store: no device node, and the setuid file is where only root reaches it.
        store = Path(node.state_dir, "images")
        found = [p for p in files_under(store) if token in p.name]
        for p in found:
            mode = os.lstat(p).st_mode
            assert not (stat.S_ISBLK(mode) or stat.S_ISCHR(mode)), f"a device node in the store: {p}"
        for p in [p for p in found if p.name == f"suidcat-{token}"]:
            as_nobody = subprocess.run(
                ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "sh", "-c",
                 f"stat {p} >/dev/null 2>&1 && echo reached; {p} {root_secret} 2>&1; echo end"],
                capture_output=True, text=True, timeout=30)
            assert "reached" not in as_nobody.stdout and secret not in as_nobody.stdout, \
                f"a host user reaches the snapshot's setuid file {p}: {as_nobody}"

        b = t.sid(key, image=img["id"])
        kinds = node.run(b, f"stat -c '%a %u:%g' /opt/suidcat-{token}; test -p /opt/fifo-{token} && echo fifo; "
                            f"test -e /opt/blk-{token} || test -e /opt/chr-{token} || echo no-devices", key=key)
        assert kinds == "4755 0:0\nfifo\nno-devices\n", kinds
        own_shadow = node.sh(b, "cat /etc/shadow", key=key)["stdout"].splitlines()
        links = " ".join(["/opt/shadow-link", "/opt/deep-shadow-link", "/opt/proc-shadow-link",
                          "/opt/root-secret-link", "/opt/tmp-secret-link", "/opt/deep-secret-link",
                          str(root_secret), str(tmp_secret)])
        seen = ""
        for user in (None, "user"):
            res = node.sh(b, f"for f in {links}; do /opt/suidcat-{token} $f; cat $f; done 2>&1; "
                             f"python3 -c 'import sys\nfor p in sys.argv[1:]:\n try: print(open(p).read())\n "
                             f"except OSError as e: print(e)' {links}; echo END",
                          key=key, user=user)
            assert "END" in res["stdout"], res
            seen += outputs(res)
        assert secret not in seen, f"the snapshot's sandbox read the host's secret: {seen[-2000:]}"
        try:
            host_shadow = Path("/etc/shadow").read_text().splitlines()
        except OSError:
            host_shadow = []
        leaked = [line for line in host_shadow if line and line not in own_shadow and line in seen]
        assert not leaked, f"lines of the host's /etc/shadow read inside: {leaked}"
    finally:
        root_secret.unlink(missing_ok=True)
        tmp_secret.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# leak census


def test_disks_and_volumes_leave_no_loop_device_mount_or_file_behind(node_factory):
    # Defences: autoclear loop devices held only by the sandbox's mounts, scratch files
    # unlinked once on their loop device, detached mounts that are never on the host, and
    # volume files removed with their volume. Without them the census finds loop devices
    # backed by the state dir, mounts of it, or files left in STATE/disks.
    n = node_factory()
    state = os.path.realpath(n.state_dir)
    ids, vol_ids = [], []
    for i in range(30):
        sid = n.create_sandbox(disk_bytes=(48 if i % 2 else 32) * MIB, timeout_ms=120_000)["id"]
        ids.append(sid)
        if i % 6 == 0:
            n.run(sid, "head -c 2097152 /dev/urandom > /home/user/f; sleep 100 </dev/null >/dev/null 2>&1 &")
        if i % 10 == 3:
            assert n.post(f"/v1/sandboxes/{sid}/pause").status_code == 200
        n.delete_sandbox(sid)
    for i in range(5):
        r = n.post("/v1/volumes", json={"size_bytes": 16 * MIB})
        assert r.status_code == 201, r.text
        vid = r.json()["id"]
        vol_ids.append(vid)
        holders = [n.create_sandbox(timeout_ms=120_000, volumes=[mount(vid)])["id"]]
        n.run(holders[0], "head -c 1048576 /dev/urandom > /data/f && sync")
        if i == 0:
            holders.append(n.create_sandbox(timeout_ms=120_000, volumes=[mount(vid, read_only=True)])["id"])
        if i == 1:
            assert n.post(f"/v1/sandboxes/{holders[0]}/pause").status_code == 200
        ids += holders
        for sid in holders:
            n.delete_sandbox(sid)
        wait_attached(n, vid, [])
        assert n.delete(f"/v1/volumes/{vid}").status_code == 204
    # Creates refused by the sandbox's own set-up (the image has a file there) after its disk
    # was made.
    r = n.post("/v1/volumes", json={"size_bytes": 16 * MIB})
    vid = r.json()["id"]
    vol_ids.append(vid)
    for path in ("/etc/passwd", "/bin"):
        error_of(n.post("/v1/sandboxes", json={"volumes": [mount(vid, path)]}), 400)
    assert n.delete(f"/v1/volumes/{vid}").status_code == 204

    assert_gone_from_host(n.state_dir, ids, timeout=30)
    disks = Path(state, "disks")
    assert disks.is_dir(), f"no {disks}"

    def census() -> list[str]:
        found = []
        for dev, backing in node_loops(state).items():
            path = backing.removesuffix(" (deleted)")
            # A few spare scratch disks (unlinked, in STATE/disks) are kept ready while the
            # node runs; nothing else may be on a loop device.
            if not (backing.endswith(" (deleted)") and path.startswith(str(disks) + "/")) or \
                    any(v in backing for v in vol_ids):
                found.append(f"loop {dev} → {backing}")
        spares = len(node_loops(state))
        if spares > 8:
            found.append(f"{spares} loop devices on the state dir (more than a few spares)")
        found += [f"mount {line}" for line in mountinfo_lines(state)]
        found += [f"file {disks / name}" for name in os.listdir(disks)
                  if not re.match(r"^template-\d+\.ext4$", name)]
        found += [f"volume file {f}" for v in vol_ids for f in volume_files(state, v)]
        return found

    wait_until(lambda: not census(), 5, lambda: f"left behind while the node runs: {census()}", interval=0.2)
    assert not list(Path(state, "sandboxes").iterdir()), list(Path(state, "sandboxes").iterdir())
    assert n.healthy()

    # Stopped, the node holds nothing: no loop device at all remains.
    n.stop()
    wait_until(lambda: not node_loops(state), 5,
               lambda: f"loop devices on the state dir after the node stopped: {node_loops(state)}", interval=0.2)
    assert not mountinfo_lines(state), mountinfo_lines(state)
    left = [name for name in os.listdir(disks) if not re.match(r"^template-\d+\.ext4$", name)]
    assert not left, f"files left in {disks}: {left}"
