"""Attacks on desktop sandboxes (issue 16). A desktop adds an X server, a window manager and,
on demand, a VNC server with a websocket bridge to a sandbox; each is a way in or out that
the sandbox's isolation must close:

- displays: from inside, no other X server is reachable — not the host's (a real Xvfb the
  test starts on the host, listening on its socket path, its abstract socket and TCP) nor
  another sandbox's; the sandbox's /tmp/.X11-unix is its own. Positive controls: the same
  probes reach the host's server from the host, and the sandbox's own server from inside.
- two desktops do not see each other's windows, by the API, by X clients inside (xdotool),
  or on screen (OCR).
- the X server and the window manager run inside the sandbox: its cgroups (so its limits and
  its freezer), its uid range (not host root), no capabilities, seccomp on — checked from the
  host's /proc, found by their command line and pid namespace.
- the live view: the VNC server listens on the sandbox's loopback only (the host reaches the
  websocket bridge's port at the sandbox's address, not 5900 nor an X port), another sandbox
  reaches none of them, RFB refuses wrong passwords (and offers no unauthenticated mode),
  noVNC without the password shows no desktop; the password is in no log and no listing.
- the security suite's attacks (test_security.py) fail in a desktop sandbox too, with the X
  server running beside them.

Each check fails if its layer is removed (a shared network namespace or /tmp, an X server
started by the node on the host, x11vnc without -localhost or without a password…). Nothing
can harm the host: the host's X server is a throwaway Xvfb on a free display number.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
from pathlib import Path

import pytest

import test_security as attacks
from e2e_util import agent_pid, proc_status, processes_in_sandbox_cgroup, wait_until
from test_desktop import (
    RFB,
    Browser,
    center,
    click,
    cmdline,
    create_desktop,
    info,
    needs_chromium,
    ocr,
    ocr_word,
    open_xterm,
    rfb_login,
    screenshot,
    shows,
    start_stream,
    type_text,
    wait_shown,
    windows,
    x_servers,
)

X11_UNIX = "/tmp/.X11-unix"

# Inside a sandbox: tries each X server address of $TARGETS (JSON: [[name, kind, address]];
# kind "unix" a path, "abstract" an abstract name, "tcp" [host, port]) with an X11 connection
# setup; prints {name: "accepted" | "refused <byte>" | "ERROR <exception>"}.
X_PROBE = r"""
import json, os, socket, struct
out = {}
for name, kind, addr in json.loads(os.environ["TARGETS"]):
    try:
        if kind == "tcp":
            s = socket.create_connection(tuple(addr), 2)
        else:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(2)
            s.connect(("\0" + addr) if kind == "abstract" else addr)
        s.settimeout(3)
        s.sendall(b"l\0" + struct.pack("<HHHHxx", 11, 0, 0, 0))
        reply = s.recv(8)
        out[name] = "accepted" if reply[:1] == b"\x01" else f"refused {reply[:1]!r}"
        s.close()
    except Exception as e:
        out[name] = "ERROR " + repr(e)
print(json.dumps(out))
"""


def x_hello(kind: str, addr) -> str:
    """The same probe, from the host."""
    try:
        if kind == "tcp":
            s = socket.create_connection(tuple(addr), 2)
        else:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(2)
            s.connect(("\0" + addr) if kind == "abstract" else addr)
        with s:
            s.settimeout(3)
            s.sendall(b"l\0" + struct.pack("<HHHHxx", 11, 0, 0, 0))
            reply = s.recv(8)
        return "accepted" if reply[:1] == b"\x01" else f"refused {reply[:1]!r}"
    except Exception as e:  # noqa: BLE001 - the answer
        return "ERROR " + repr(e)


def probe_inside(node, sid: str, targets: list) -> dict:
    res = node.sh(sid, "python3 -c \"$X_PROBE\"", env={"X_PROBE": X_PROBE, "TARGETS": json.dumps(targets)})
    assert res["exit_code"] == 0, f"the probe failed in {sid}: {res}"
    return json.loads(res["stdout"].strip().splitlines()[-1])


def sandbox_addr(node, sid: str) -> tuple[str, str]:
    """(the sandbox's address, its gateway)."""
    out = node.run(sid, "ip -4 -o addr show dev eth0; ip -4 route show default")
    return re.search(r"inet (\S+)/", out).group(1), re.search(r"default via (\S+)", out).group(1)


def tcp_from_host(host: str, port: int) -> str:
    try:
        socket.create_connection((host, port), 2).close()
        return "connected"
    except OSError as e:
        return "ERROR " + repr(e)


def tcp_from_sandbox(node, sid: str, host: str, port: int, timeout: float = 1.5) -> str:
    code = ("import socket\n"
            "try:\n"
            f"    socket.create_connection(({host!r}, {port}), {timeout}).close(); print('connected')\n"
            "except Exception as e:\n"
            "    print('ERROR', repr(e))\n")
    return node.run(sid, "python3 -", stdin=code).strip()


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def desk(node):
    """A desktop sandbox for the attacks that do not change its screen."""
    sbx = create_desktop(node, timeout_ms=1_800_000)
    yield sbx["id"]
    node.delete(f"/v1/sandboxes/{sbx['id']}")


@pytest.fixture(scope="module")
def desk_neighbour(node):
    """A second desktop sandbox of the same tenant."""
    sbx = create_desktop(node, timeout_ms=1_800_000)
    yield sbx["id"]
    node.delete(f"/v1/sandboxes/{sbx['id']}")


@pytest.fixture
def fresh(node):
    """A fresh desktop sandbox, deleted after the test."""
    sbx = create_desktop(node)
    yield sbx["id"]
    node.delete(f"/v1/sandboxes/{sbx['id']}")


@pytest.fixture(scope="module")
def host_display():
    """A throwaway X server on the host (Xvfb, no access control beyond its default: local
    clients accepted) on a free display number N, listening on /tmp/.X11-unix/XN, the
    abstract socket of that name and TCP port 6000+N: N."""
    free = [n for n in random.sample(range(100, 900), 60)
            if not os.path.exists(f"{X11_UNIX}/X{n}") and not os.path.exists(f"/tmp/.X{n}-lock")
            and tcp_from_host("127.0.0.1", 6000 + n).startswith("ERROR")]
    assert free, "no free X display number on the host"
    n = free[0]
    # -noreset: a server without clients resets and drops connections meanwhile.
    proc = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", "320x240x24", "-listen", "tcp", "-noreset"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_until(lambda: x_hello("unix", f"{X11_UNIX}/X{n}") == "accepted", 20,
                   f"the host's Xvfb :{n} does not accept clients")
        yield n
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------------------------------------
# displays


def test_no_host_display_is_reachable_from_inside(node, desk, host_display):
    n = host_display
    # Positive control: from the host, the host's server accepts on every address.
    for kind, addr in (("unix", f"{X11_UNIX}/X{n}"), ("abstract", f"{X11_UNIX}/X{n}"), ("tcp", ["127.0.0.1", 6000 + n])):
        assert x_hello(kind, addr) == "accepted", f"control: the host's Xvfb :{n} refuses {kind} {addr}"
    _, gateway = sandbox_addr(node, desk)
    listing = node.run(desk, f"ls -A {X11_UNIX}")
    assert listing.split() == ["X0"], f"{X11_UNIX} inside holds {listing.split()}, not only the sandbox's X0"
    targets = [
        ["own path", "unix", f"{X11_UNIX}/X0"],
        ["own abstract", "abstract", f"{X11_UNIX}/X0"],
        ["host path", "unix", f"{X11_UNIX}/X{n}"],
        ["host abstract", "abstract", f"{X11_UNIX}/X{n}"],
        ["host tcp via gateway", "tcp", [gateway, 6000 + n]],
        ["host tcp via loopback", "tcp", ["127.0.0.1", 6000 + n]],
        [":1 abstract", "abstract", f"{X11_UNIX}/X1"],
        [":1 path", "unix", f"{X11_UNIX}/X1"],
        [":0 tcp", "tcp", ["127.0.0.1", 6000]],
    ]
    got = probe_inside(node, desk, targets)
    # Control inside: the sandbox's own server answers on its path and abstract socket.
    assert got["own path"] == "accepted" and got["own abstract"] == "accepted", f"the sandbox's own X0: {got}"
    reached = {k: v for k, v in got.items() if not k.startswith("own") and v == "accepted"}
    assert not reached, f"X servers other than the sandbox's own are reachable from inside: {reached}"
    # X clients agree: any display but :0 fails, also as the unprivileged user.
    for user in ("root", "user"):
        for display in (f":{n}", ":1", f"{gateway}:{n}"):
            res = node.sh(desk, f"DISPLAY={display} timeout 10 xdpyinfo", user=user)
            assert res["exit_code"] != 0, f"xdpyinfo on {display} as {user} inside succeeded: {res['stdout'][:300]}"
    assert "dimensions:    1280x800" in node.run(desk, "xdpyinfo"), "control: xdpyinfo on the sandbox's :0 fails"


def test_the_host_sees_no_x_server_of_the_sandbox(node, desk):
    """The sandbox's X0 socket lives in its own /tmp and network namespace: the host's
    /tmp/.X11-unix has no socket of it and its abstract name is not the host's."""
    pid = x_servers(desk)[0]
    inode = os.stat(f"/proc/{agent_pid(desk)}/root{X11_UNIX}/X0").st_ino
    try:
        host_inode = os.stat(f"{X11_UNIX}/X0").st_ino
    except FileNotFoundError:
        host_inode = None
    assert inode != host_inode, "the sandbox's X0 socket is the host's /tmp/.X11-unix/X0"
    assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net"), (
        "the sandbox's X server runs in the host's network namespace (its abstract socket is the host's)")
    assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt"), (
        "the sandbox's X server runs in the host's mount namespace")


def test_two_desktops_do_not_see_each_others_windows(node, fresh, desk_neighbour):
    a, b = fresh, desk_neighbour
    title = "unique-title-a-" + ocr_word(6).lower()
    w = open_xterm(node, a, title, "50x6+200+300")
    click(node, a, *center(w))
    word = ocr_word()
    type_text(node, a, f"echo {word[:4]}''{word[4:]}\n")
    shot_a = wait_shown(node, a, word)
    # Controls in A: the API, an X client and the screen all see the window.
    assert any(x["title"] == title for x in windows(node, a))
    assert node.sh(a, f"xdotool search --name {title}")["stdout"].strip() == str(w["id"]), "control: xdotool in A"
    # B sees none of it.
    assert not any(x["title"] == title for x in windows(node, b)), f"B lists A's window: {windows(node, b)}"
    res = node.sh(b, f"xdotool search --name {title}")
    assert res["exit_code"] != 0 and res["stdout"].strip() == "", f"xdotool in B finds A's window: {res}"
    for user in ("root", "user"):
        out = node.sh(b, "xdotool search --name . 2>/dev/null; xprop -root _NET_CLIENT_LIST", user=user)["stdout"]
        assert str(w["id"]) not in out and hex(w["id"]) not in out, f"B's X server lists A's window ({user}): {out}"
    shot_b = screenshot(node, b)
    assert not shows(shot_b, word), f"B's screenshot shows A's text {word}: {ocr(shot_b)!r}"
    assert shot_b != shot_a
    # Typing into B does not reach A.
    type_text(node, b, "echo typed-into-b > /tmp/from-b\n")
    assert node.sh(a, "test -e /tmp/from-b")["exit_code"] != 0, "text typed into B ran in A"
    assert x_servers(a) and x_servers(b) and set(x_servers(a)).isdisjoint(x_servers(b))


def test_the_x_server_runs_in_the_sandbox_as_its_unprivileged_uid(node, desk):
    agent = agent_pid(desk)
    pidns = os.readlink(f"/proc/{agent}/ns/pid")
    # Every X server and window manager of the sandbox's pid namespace, found on the host by
    # their command line (not by the cgroup the check is about).
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") != pidns:
                continue
        except OSError:
            continue
        argv0 = cmdline(int(entry)).split(b"\0")[0]
        if argv0 in (b"Xvfb", b"openbox"):
            found.setdefault(argv0.decode(), []).append(int(entry))
    assert len(found.get("Xvfb", [])) == 1 and len(found.get("openbox", [])) == 1, (
        f"expected one Xvfb and one openbox in sandbox {desk}'s pid namespace: {found}")
    assert b"-nolisten\0tcp" in cmdline(found["Xvfb"][0]), "the sandbox's X server listens on TCP"
    outside, count = (int(x) for x in Path(f"/proc/{agent}/uid_map").read_text().split()[1:3])
    in_cgroup = set(processes_in_sandbox_cgroup(desk))
    for name, (pid,) in found.items():
        assert pid in in_cgroup, f"{name} (host pid {pid}) is not in sandbox {desk}'s cgroup"
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            wanted = [l for l in lines if l.startswith("0::")]
        else:
            wanted = [l for l in lines if any(c in l.split(":")[1].split(",") for c in ("memory", "cpu", "pids", "freezer"))]
        assert wanted and all(f"/ai2in/{desk}" in l for l in wanted), (
            f"{name}'s cgroups do not all name the sandbox: {lines}")
        status = proc_status(pid)
        uids = [int(u) for u in status["Uid"].split()]
        gids = [int(g) for g in status["Gid"].split()]
        assert all(outside <= u < outside + count for u in uids + gids), (
            f"{name} runs as host uid/gid {uids}/{gids}, outside the sandbox's range {outside}+{count}")
        assert uids[0] != outside, f"{name} runs as the sandbox's root, not as its unprivileged user"
        assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0, (
            f"{name} has capabilities: {status['CapEff']} / {status['CapPrm']}")
        assert status["Seccomp"] == "2" and status["NoNewPrivs"] == "1", (
            f"{name} runs without the sandbox's seccomp filter / no_new_privs: {status['Seccomp']} {status['NoNewPrivs']}")


# ---------------------------------------------------------------------------------------------
# the live view


def test_the_vnc_server_listens_on_the_sandbox_loopback_only(node, fresh, desk_neighbour):
    s = start_stream(node, fresh)
    addr, _ = sandbox_addr(node, fresh)
    listening = node.run(fresh, "ss -Hltn")
    assert re.search(r"127\.0\.0\.1:5900\b", listening), f"control: nothing listens on 127.0.0.1:5900 inside: {listening}"
    # From the host: the websocket bridge's port answers at the sandbox's address (control),
    # VNC's and X's ports do not.
    assert tcp_from_host(addr, 6080) == "connected", f"control: the host cannot reach {addr}:6080"
    for port in (5900, 5901, 6000):
        got = tcp_from_host(addr, port)
        assert got.startswith("ERROR"), f"the host reaches the desktop sandbox's port {port} at {addr}: {got}"
    # From another sandbox: none of them.
    for port in (5900, 6000, 6080):
        got = tcp_from_sandbox(node, desk_neighbour, addr, port)
        assert got.startswith("ERROR"), f"another sandbox reaches {addr}:{port}: {got}"
    # Another sandbox's own loopback is its own: no VNC server there.
    got = tcp_from_sandbox(node, desk_neighbour, "127.0.0.1", 5900)
    assert got.startswith("ERROR"), f"another sandbox reaches a VNC server on its loopback: {got}"
    # The page is reached through the node's proxy only, and needs the password (below).
    assert info(node, fresh)["stream"]["url"] == s["url"]


def test_rfb_refuses_wrong_passwords_and_offers_no_unauthenticated_mode(node, fresh):
    s = start_stream(node, fresh)
    viewer = rfb_login(node, s)  # control
    assert viewer.security_types == [2], f"the VNC server offers security types {viewer.security_types}, not VNC auth only"
    viewer.close()
    wrong = "".join(random.choice("abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(8))
    for password in (wrong, "", s["password"][:7], s["password"].swapcase()):
        if password == s["password"]:
            continue
        client = RFB(node, s)
        try:
            refused = client.handshake(password)
        finally:
            client.close()
        assert refused is not None, f"the VNC server accepted the password {password!r} (its own is {s['password']!r})"
    # Asking for no authentication (security type 1) is refused.
    client = RFB(node, s)
    try:
        client.recv(12)
        client.send(b"RFB 003.008\n")
        types = list(client.recv(client.recv(1)[0]))
        client.send(b"\x01")
        result = client.recv(4)
        assert struct.unpack(">I", result)[0] != 0, f"the VNC server let a client in without authentication ({types})"
    except ConnectionError:
        pass  # closed on the spot: refused too
    finally:
        client.close()
    # The right password still works afterwards.
    rfb_login(node, s).close()


@needs_chromium
def test_novnc_without_the_password_shows_no_desktop(node, fresh):
    w = open_xterm(node, fresh, "secret-screen", "50x6+200+300")
    click(node, fresh, *center(w))
    word = ocr_word()
    type_text(node, fresh, f"echo {word[:4]}''{word[4:]}\n")
    wait_shown(node, fresh, word)
    s = start_stream(node, fresh)
    state = ("JSON.stringify({cls: document.documentElement.className,"
             " status: (document.getElementById('noVNC_status') || {}).textContent,"
             " asks: !!document.querySelector('#noVNC_credentials_dlg.noVNC_open')})")
    for url, what, outcome in ((s["url"], "no password", lambda st: st["asks"]),
                               (s["url"] + "&password=wrongpw1", "a wrong password",
                                lambda st: "rejected" in st["status"] or st["asks"])):
        browser = Browser()
        try:
            browser.open_novnc(url)
            got = wait_until(lambda: (st := json.loads(browser.eval(state) or "null")) and outcome(st) and st, 30,
                             lambda: f"noVNC with {what} neither asks for the password nor fails: {browser.eval(state)}")
            assert "noVNC_connected" not in got["cls"], f"noVNC connected with {what}: {got}"
            png = browser.screenshot()
            assert not shows(png, word), f"the browser shows the desktop with {what}: {ocr(png)!r}"
            assert "noVNC_connected" not in json.loads(browser.eval(state))["cls"]
        finally:
            browser.close()
    # Control: with the password the same page shows the desktop.
    browser = Browser()
    try:
        browser.open_novnc(f"{s['url']}&password={s['password']}")
        browser.wait_connected()
        wait_until(lambda: shows(browser.screenshot(), word), 30, "control: noVNC with the password never showed the desktop",
                   interval=0.5)
    finally:
        browser.close()


def test_the_stream_password_is_in_no_log_and_no_listing(node, fresh):
    s = start_stream(node, fresh)
    password = s["password"]
    assert password not in s["url"], "the stream's url carries its password"
    assert password not in json.dumps(info(node, fresh)), "GET …/desktop shows the password"
    commands = node.get(f"/v1/sandboxes/{fresh}/commands").text
    assert password not in commands, "the command list shows the stream's password"
    for c in json.loads(commands)["commands"]:
        logs = node.post(f"/v1/sandboxes/{fresh}/commands/{c['command_id']}/logs").text
        assert password not in logs, f"command {c['command_id']}'s output holds the stream's password"
    assert password not in Path(node.log_path).read_text(errors="replace"), "node.log holds the stream's password"
    # Inside, the password file is the unprivileged user's alone.
    mode = node.run(fresh, "stat -c '%a %U' /tmp/.ai2in-vnc-passwd").strip()
    assert mode == "600 user", f"the VNC password file is {mode}"


# ---------------------------------------------------------------------------------------------
# the security suite in a desktop sandbox


SAME_ATTACKS = [
    attacks.test_sandbox_root_is_not_the_host_root,
    attacks.test_sandbox_cannot_escape_via_dotdot_symlinks_or_chroot,
    attacks.test_sandbox_cannot_write_the_hosts_usr,
    attacks.test_sandbox_cannot_mount_the_host_disk,
    attacks.test_sandbox_cannot_create_device_nodes,
    attacks.test_sandbox_cannot_trigger_sysrq_or_read_kernel_memory,
    attacks.test_sandbox_cannot_load_kernel_modules,
    attacks.test_sandbox_processes_have_no_dangerous_capabilities_and_seccomp,
    attacks.test_seccomp_refuses_dangerous_syscalls_with_eperm,
    attacks.test_sandbox_network_has_only_its_own_links_and_cannot_reach_host_services,
]


@pytest.mark.parametrize("attack", SAME_ATTACKS, ids=lambda f: f.__name__.removeprefix("test_"))
def test_the_security_suites_attack_fails_in_a_desktop_sandbox(node, desk, attack):
    attack(node, desk)
    # The display was not disturbed by what ran beside it.
    assert x_servers(desk), "the desktop's X server is gone"
    assert node.run(desk, "xdotool getdisplaygeometry") == "1280 800\n"


def test_root_in_a_desktop_sandbox_is_an_unprivileged_uid_distinct_from_its_neighbours(node, desk, desk_neighbour):
    attacks.test_root_inside_is_an_unprivileged_uid_on_the_host_distinct_per_sandbox(node, desk, desk_neighbour)
