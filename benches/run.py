#!/usr/bin/env python3
"""Run-code benchmark: warm `1+1` round trip, first run in a new context, stream first
byte, and terminal echo round trip, side by side with a Jupyter kernel (ipykernel through
jupyter_client) executing the same code in the same run.

Usage: sudo benches/run.py
Builds the release binary unless AI2IN_BIN is set; installs jupyter_client and ipykernel
with pip when missing.
"""
import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

from harness import Node, machine, percentile, release_binary, report, timed


def jupyter():
    try:
        import jupyter_client  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "jupyter_client", "ipykernel"], check=True)
    from jupyter_client.manager import start_new_kernel

    return start_new_kernel(kernel_name="python3")


def jupyter_run(client, code):
    msg_id = client.execute(code)
    while True:
        msg = client.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return


def main():
    node = Node(release_binary())
    print(machine())
    try:
        sid = node.call("POST", "/v1/sandboxes", {})["id"]
        run = lambda **body: node.call("POST", f"/v1/sandboxes/{sid}/run", body)
        run(code="0")  # the default context is warm from here on

        manager, client = jupyter()
        try:
            jupyter_run(client, "0")
            jup_warm = timed(lambda: jupyter_run(client, "1+1"), 200)
            jup_first = []
            for _ in range(5):
                t = time.perf_counter()
                m, c = __import__("jupyter_client.manager", fromlist=["x"]).start_new_kernel(kernel_name="python3")
                jupyter_run(c, "1+1")
                jup_first.append((time.perf_counter() - t) * 1000)
                c.stop_channels()
                m.shutdown_kernel(now=True)
        finally:
            client.stop_channels()
            manager.shutdown_kernel(now=True)

        report("run `1+1`, warm context", timed(lambda: run(code="1+1"), 200), "ipykernel execute 1+1 (warm)", jup_warm)

        created = []

        def first_run():
            ctx = node.call("POST", f"/v1/sandboxes/{sid}/contexts", {"language": "python"})["context_id"]
            run(code="1+1", context_id=ctx)
            created.append(ctx)

        firsts = timed(first_run, 10)
        for ctx in created:
            node.call("DELETE", f"/v1/sandboxes/{sid}/contexts/{ctx}")
        report("first run, new context", firsts, "new ipykernel + execute 1+1", jup_first)

        def first_byte():
            req = urllib.request.Request(f"{node.url}/v1/sandboxes/{sid}/run/stream", data=json.dumps({"code": "print(1)"}).encode(),
                                         method="POST", headers={"Authorization": "Bearer " + node.key, "Content-Type": "application/json"})
            t = time.perf_counter()
            with urllib.request.urlopen(req) as r:
                for raw in r:
                    if raw.startswith(b"event: stdout"):
                        elapsed = (time.perf_counter() - t) * 1000
                        r.read()
                        return elapsed
            raise RuntimeError("no stdout event")

        firsts = [first_byte() for _ in range(100)]
        print(f"{'stream first stdout byte':<28} p50 {percentile(firsts, 50):8.2f} ms  p99 {percentile(firsts, 99):8.2f} ms")

        # Terminal echo over the WebSocket: a byte typed, the same byte back.
        import websocket

        pid = node.call("POST", f"/v1/sandboxes/{sid}/pty", {"cmd": "stty raw -echo; cat"})["pid"]
        ws = websocket.create_connection(f"{node.url.replace('http', 'ws')}/v1/sandboxes/{sid}/pty/{pid}/ws",
                                         header=[f"Authorization: Bearer {node.key}"])
        def echo(token):
            ws.send_binary(token)
            seen = b""
            while token not in seen:
                seen += ws.recv()

        echo(b"warm")
        echoes = []
        for i in range(200):
            t = time.perf_counter()
            echo(f"<{i:04d}>".encode())
            echoes.append((time.perf_counter() - t) * 1000)
        ws.close()
        report("terminal echo round trip", echoes, "the same echo, local PTY + cat", local_pty_echo(200))
    finally:
        node.stop()


def local_pty_echo(n) -> list[float]:
    """The terminal echo without ai2in: `cat` behind a PTY on this host, no network."""
    master, slave = os.openpty()
    cat = subprocess.Popen(["sh", "-c", "stty raw -echo; exec cat"], stdin=slave, stdout=slave,
                           stderr=slave, start_new_session=True)
    os.close(slave)
    time.sleep(0.2)  # until stty has run

    def echo(token):
        os.write(master, token)
        seen = b""
        while token not in seen:
            seen += os.read(master, 4096)

    try:
        echo(b"warm")
        out = []
        for i in range(n):
            t = time.perf_counter()
            echo(f"<{i:04d}>".encode())
            out.append((time.perf_counter() - t) * 1000)
        return out
    finally:
        cat.kill()
        cat.wait()
        os.close(master)


if __name__ == "__main__":
    sys.exit(main())
