"""The `ai2in` command line, driven as a user would: sandboxes, exec, run, commands, cp/fs,
keys, nodes, `--json` through jq, exit statuses, completions, configuration precedence, and the
interactive `ai2in shell` in a real terminal (tmux)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
import uuid

import pytest

from conftest import binary_path
from e2e_util import wait_until


# A config directory with no ai2in/config.toml: the user's own must not leak into the tests.
NO_CONFIG = "/nonexistent-ai2in-e2e-config"


def run_cli(args, env, input=None, check=True) -> subprocess.CompletedProcess:
    p = subprocess.run([str(binary_path()), *args], env=env, input=input, capture_output=True, text=True, timeout=60)
    if check:
        assert p.returncode == 0, f"ai2in {' '.join(args)} → {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def cli_env(node, **extra) -> dict:
    """The environment of a user of `node` on its host: its URL, its state dir (the admin
    key), no key variable and no config file, plus `extra` (None removes a variable)."""
    env = dict(os.environ, AI2IN_BASE_URL=node.url, AI2IN_STATE_DIR=node.state_dir, XDG_CONFIG_HOME=NO_CONFIG)
    env.pop("AI2IN_API_KEY", None)
    env.pop("NO_COLOR", None)
    for name, value in extra.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def cli(node, *args, input=None, check=True) -> subprocess.CompletedProcess:
    return run_cli(args, cli_env(node), input=input, check=check)


def jq(filter_: str, text: str) -> str:
    """`text` piped through `jq -r FILTER`, as a script would."""
    p = subprocess.run(["jq", "-r", filter_], input=text, capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, f"jq {filter_!r} failed on {text!r}: {p.stderr}"
    return p.stdout.strip()


needs_jq = pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")


def test_exec_passes_output_and_exit_code_through(node, sandbox):
    p = cli(node, "exec", sandbox["id"], "--", "sh", "-c", "echo out; echo err >&2; exit 7", check=False)
    assert p.returncode == 7
    assert p.stdout == "out\n" and p.stderr == "err\n"
    p = cli(node, "exec", sandbox["id"], "--", "echo", "a b", "it's")
    assert p.stdout == "a b it's\n"


def test_commands_start_logs_and_kill(node, sandbox):
    sid = sandbox["id"]
    cid = cli(node, "commands", "start", sid, "--", "sh", "-c", "echo started; sleep 60").stdout.strip()
    assert cid.startswith("cmd_")
    wait_until(lambda: cli(node, "commands", "logs", sid, cid).stdout == "started\n", 10, "no output")
    listed = json.loads(cli(node, "commands", "ls", sid, "--json").stdout)["commands"]
    assert any(c["command_id"] == cid and c["status"] == "running" for c in listed)
    cli(node, "commands", "kill", sid, cid)
    wait_until(
        lambda: any(c["command_id"] == cid and c["status"] == "killed" for c in json.loads(cli(node, "commands", "ls", sid, "--json").stdout)["commands"]),
        10,
        "not killed",
    )


def test_cp_round_trips_a_directory_tree(node, sandbox, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "sub" / "b.bin").write_bytes(os.urandom(3 << 20))
    (src / "empty").mkdir()
    cli(node, "cp", str(src), f"{sandbox['id']}:/home/user/tree")
    listing = cli(node, "fs", "ls", sandbox["id"], "/home/user/tree").stdout
    assert "a.txt" in listing and "sub" in listing and "empty" in listing
    back = tmp_path / "back"
    cli(node, "cp", f"{sandbox['id']}:/home/user/tree", str(back))
    assert (back / "a.txt").read_text() == "alpha"
    assert (back / "sub" / "b.bin").read_bytes() == (src / "sub" / "b.bin").read_bytes()
    assert cli(node, "fs", "cat", sandbox["id"], "/home/user/tree/a.txt").stdout == "alpha"


def test_cp_streams_one_file_over_the_old_32_mib_limit_both_ways(node, sandbox, tmp_path):
    sid = sandbox["id"]
    data = os.urandom(40 << 20)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    cli(node, "cp", str(src), f"{sid}:/home/user/")  # into a directory: keeps the name
    assert node.run(sid, "sha256sum /home/user/big.bin").split()[0] == hashlib.sha256(data).hexdigest()
    back = tmp_path / "back.bin"
    cli(node, "cp", f"{sid}:/home/user/big.bin", str(back))
    assert back.read_bytes() == data
    cat = subprocess.run([str(binary_path()), "fs", "cat", sid, "/home/user/big.bin"], env=cli_env(node),
                         capture_output=True, timeout=60)
    assert cat.returncode == 0 and cat.stdout == data
    p = cli(node, "cp", f"{sid}:/home/user/missing.bin", str(tmp_path / "missing.bin"), check=False)
    assert p.returncode != 0 and "does not exist" in p.stderr
    assert not (tmp_path / "missing.bin").exists()


def test_keys_create_list_revoke(node):
    created = json.loads(cli(node, "keys", "create", "cli-test", "--scope", "sandboxes:read", "--json").stdout)
    assert created["key"].startswith("ai2in_live_")
    listed = cli(node, "keys", "list").stdout
    assert created["id"] in listed and "cli-test" in listed
    cli(node, "keys", "revoke", created["id"])
    assert created["id"] not in cli(node, "keys", "list").stdout


def test_nodes_ls_lists_the_node_itself_ready(node, sandbox):
    nodes = json.loads(cli(node, "nodes", "ls", "--json").stdout)["nodes"]
    # A node on its own is a cluster of one, named as its sandboxes name it.
    assert [n["id"] for n in nodes] == [sandbox["node_id"]], nodes
    me = nodes[0]
    assert me["status"] == "ready"
    assert me["used"]["sandboxes"] >= 1 and me["capacity"]["sandboxes"] >= me["used"]["sandboxes"]
    assert me["capacity"]["memory_bytes"] > 0 and me["capacity"]["cpu"] > 0
    table = cli(node, "nodes", "list").stdout.splitlines()
    assert table[0].split() == ["ID", "ADDRESS", "STATUS", "SANDBOXES", "MEMORY", "CPU", "LAST", "SEEN"]
    row = table[1].split()
    assert row[0] == me["id"] and "ready" in row
    assert f"{me['used']['sandboxes']}/{me['capacity']['sandboxes']}" in row
    assert "\x1b[" not in "\n".join(table), "no colours when piped"


def test_nodes_drain_then_creates_fail_with_the_capacity_status(node_factory):
    # A node of the test's own: a drained node takes nothing new.
    own = node_factory('node_id = "cli-drain-e2e"\n')
    user = own.create_key(["sandboxes:write"])["key"]
    p = run_cli(["nodes", "drain", "cli-drain-e2e"], cli_env(own, AI2IN_API_KEY=user), check=False)
    assert p.returncode == 3 and "admin" in p.stderr, p.stderr
    p = run_cli(["nodes", "ls"], cli_env(own, AI2IN_API_KEY=user), check=False)
    assert p.returncode == 3 and "admin" in p.stderr, p.stderr
    listed = json.loads(cli(own, "nodes", "ls", "--json").stdout)["nodes"]
    assert [n["status"] for n in listed] == ["ready"], "a refused drain drained the node"
    assert cli(own, "nodes", "drain", "no-such-node", check=False).returncode == 4

    drained = cli(own, "nodes", "drain", "cli-drain-e2e").stdout
    assert "id:        cli-drain-e2e" in drained and "status:    draining" in drained, drained
    p = cli(own, "sandbox", "create", check=False)
    assert p.returncode == 6 and "draining" in p.stderr, p.stderr
    listed = json.loads(cli(own, "nodes", "ls", "--json").stdout)["nodes"]
    assert [(n["id"], n["status"]) for n in listed] == [("cli-drain-e2e", "draining")]
    assert "draining" in cli(own, "nodes", "ls").stdout
    assert json.loads(cli(own, "nodes", "drain", "cli-drain-e2e", "--json").stdout)["status"] == "draining"


def test_errors_are_one_sentence_and_a_failure_status(node):
    p = cli(node, "exec", "sbx_doesnotexist0000000", "--", "true", check=False)
    assert p.returncode != 0
    assert "no sandbox sbx_doesnotexist0000000" in p.stderr


@needs_jq
def test_sandbox_create_ls_info_timeout_rm_with_json_through_jq(node):
    created = cli(
        node, "sandbox", "create", "--timeout", "5m", "--cpu", "0.5", "--memory", "256MiB", "--disk", "1GiB",
        "--env", "SECRET=Env-Value-S3cret", "--metadata", "suite=cli", "--metadata", "case=create", "--egress", "deny", "--json",
    ).stdout
    sid = jq(".id", created)
    node.created[sid] = node.admin_key
    assert sid.startswith("sbx_")
    assert jq("[.status, .resources.cpu, .resources.memory_bytes, .resources.disk_bytes, .network.egress] | @tsv", created) == f"running\t0.5\t{256 << 20}\t{1 << 30}\tdeny"
    assert "Env-Value-S3cret" not in created, "env values are never echoed"
    assert cli(node, "exec", sid, "--", "sh", "-c", "echo $SECRET").stdout == "Env-Value-S3cret\n"

    listed = cli(node, "sandbox", "ls", "--metadata", "suite=cli", "--metadata", "case=create", "--json").stdout
    assert jq("[.sandboxes[].id] | join(\" \")", listed) == sid
    assert jq(".sandboxes | length", cli(node, "sandbox", "ls", "--status", "paused", "--metadata", "case=create", "--json").stdout) == "0"
    table = cli(node, "sandbox", "ls", "--metadata", "case=create").stdout
    assert table.splitlines()[0].split() == ["ID", "STATUS", "IMAGE", "CPU", "MEMORY", "ENDS", "METADATA"]
    assert sid in table and "256 MiB" in table and "\x1b[" not in table, "no colours when piped"

    end_before = jq(".end_at", cli(node, "sandbox", "info", sid, "--json").stdout)
    end_after = jq(".end_at", cli(node, "sandbox", "timeout", sid, "2h", "--json").stdout)
    assert end_after > end_before
    assert "status:    running" in cli(node, "sandbox", "info", sid).stdout
    assert jq(".pids > 0", cli(node, "sandbox", "metrics", sid, "--json").stdout) == "true"
    assert cli(node, "sandbox", "expose", sid, "8000").stdout.strip().startswith(f"http://8000-{sid.removeprefix('sbx_')}.")

    p = cli(node, "sandbox", "rm", sid)
    assert p.stdout == f"removed {sid}\n"
    assert node.sandbox(sid).status_code == 410


def test_rm_takes_several_ids_and_goes_on_past_a_missing_one(node):
    a, b = node.create_sandbox()["id"], node.create_sandbox()["id"]
    p = cli(node, "sandbox", "rm", a, "sbx_doesnotexist0000000", b, check=False)
    assert p.returncode == 4, p.stderr
    assert p.stdout.split() == ["removed", a, "removed", b]
    assert "no sandbox sbx_doesnotexist0000000" in p.stderr
    assert node.sandbox(a).status_code == 410 and node.sandbox(b).status_code == 410


def test_exit_statuses_tell_not_found_forbidden_paused_unreachable_and_usage(node, sandbox):
    sid = sandbox["id"]
    assert cli(node, "sandbox", "info", "sbx_doesnotexist0000000", check=False).returncode == 4
    reader = node.create_key(["sandboxes:read"])["key"]
    p = run_cli(["sandbox", "create"], cli_env(node, AI2IN_API_KEY=reader), check=False)
    assert p.returncode == 3 and "sandboxes:write" in p.stderr, p.stderr
    p = run_cli(["sandbox", "ls"], cli_env(node, AI2IN_API_KEY="ai2in_live_unknown"), check=False)
    assert p.returncode == 3, p.stderr
    cli(node, "sandbox", "pause", sid)
    try:
        p = cli(node, "exec", sid, "--", "true", check=False)
        assert p.returncode == 5 and "paused" in p.stderr, p.stderr
        assert cli(node, "run", sid, "-c", "1", check=False).returncode == 5
    finally:
        cli(node, "sandbox", "resume", sid)
    assert cli(node, "exec", sid, "--", "true").returncode == 0
    p = run_cli(["sandbox", "ls"], cli_env(node, AI2IN_BASE_URL="http://127.0.0.1:1"), check=False)
    assert p.returncode == 7, p.stderr
    assert cli(node, "sandbox", "create", "--memory", "lots", check=False).returncode == 2
    assert cli(node, "sandbox", "frobnicate", check=False).returncode == 2
    p = run_cli(["sandbox", "ls"], cli_env(node, AI2IN_STATE_DIR="/nonexistent"), check=False)
    assert p.returncode == 3 and "no API key" in p.stderr, p.stderr


def test_run_streams_output_and_passes_the_outcome(node, sandbox):
    sid = sandbox["id"]
    p = cli(node, "run", sid, "-c", "import sys\nprint('out')\nprint('err', file=sys.stderr)\n6 * 7")
    assert (p.stdout, p.stderr) == ("out\n42\n", "err\n")
    p = cli(node, "run", sid, "-c", "1/0", check=False)
    assert p.returncode == 1 and "ZeroDivisionError" in p.stderr
    p = cli(node, "run", sid, "--lang", "bash", "--env", "X=from-env", "-", input="echo $X; false", check=False)
    assert (p.returncode, p.stdout) == (1, "from-env\n")
    execution = json.loads(cli(node, "run", sid, "-c", "'a' * 3", "--json").stdout)
    assert execution["results"][0]["data"]["text/plain"] == "'aaa'"


@pytest.mark.parametrize("shell,marker", [("bash", "complete -F _ai2in"), ("zsh", "#compdef ai2in"), ("fish", "complete -c ai2in")])
def test_completions_cover_the_commands(node, shell, marker):
    script = cli(node, "completions", shell).stdout
    assert marker in script
    for word in ("sandbox", "create", "memory", "egress", "exec", "keys", "nodes", "drain"):
        assert word in script, f"{word} missing from the {shell} completions"


def test_help_shows_examples_configuration_and_exit_statuses(node):
    top = cli(node, "--help").stdout
    assert "Exit status:" in top and "7  the node could not be reached" in top and "config.toml" in top
    for command in (["sandbox", "create"], ["sandbox", "ls"], ["sandbox", "rm"], ["exec"], ["run"], ["cp"], ["keys", "create"], ["nodes", "ls"], ["nodes", "drain"], ["commands", "logs"], ["fs", "ls"]):
        assert "Example" in cli(node, *command, "--help").stdout, command


def test_configuration_flags_then_env_then_file_then_local_admin_key(node, tmp_path):
    reader = node.create_key(["sandboxes:read"])["key"]
    (tmp_path / "ai2in").mkdir()
    (tmp_path / "ai2in" / "config.toml").write_text(f'base_url = "{node.url}"\napi_key = "{reader}"\n')
    from_file = dict(XDG_CONFIG_HOME=str(tmp_path), AI2IN_BASE_URL=None)

    # The file gives both the URL and the key: a read-only key, so reads work and writes are 403.
    assert run_cli(["sandbox", "ls"], cli_env(node, **from_file)).returncode == 0
    assert run_cli(["sandbox", "create"], cli_env(node, **from_file), check=False).returncode == 3
    # The environment wins over the file...
    p = run_cli(["keys", "list", "--json"], cli_env(node, **from_file, AI2IN_API_KEY=node.admin_key))
    assert json.loads(p.stdout)["keys"]
    # ...and a flag over the environment.
    p = run_cli(["keys", "list", "--api-key", reader], cli_env(node, **from_file, AI2IN_API_KEY=node.admin_key), check=False)
    assert p.returncode == 3
    p = run_cli(["sandbox", "ls", "--base-url", "http://127.0.0.1:1"], cli_env(node, XDG_CONFIG_HOME=str(tmp_path)), check=False)
    assert p.returncode == 7
    # Without a key anywhere else, a local node's admin key is used.
    assert run_cli(["keys", "list"], cli_env(node)).returncode == 0
    # A broken file is an error that names it.
    (tmp_path / "ai2in" / "config.toml").write_text("api_kee = 1\n")
    p = run_cli(["sandbox", "ls"], cli_env(node, XDG_CONFIG_HOME=str(tmp_path)), check=False)
    assert p.returncode == 1 and "config.toml" in p.stderr, p.stderr


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_interactive_shell_in_a_real_terminal(node, sandbox):
    session = f"ai2in-{uuid.uuid4().hex[:8]}"
    env = f"AI2IN_BASE_URL={node.url} AI2IN_STATE_DIR={node.state_dir}"
    command = f"{env} {binary_path()} shell {sandbox['id']}; echo SHELL-EXIT=$?; sleep 60"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30", command], check=True)

    def screen() -> str:
        return subprocess.run(["tmux", "capture-pane", "-t", session, "-p", "-S", "-100"], capture_output=True, text=True).stdout

    def keys(*k):
        subprocess.run(["tmux", "send-keys", "-t", session, *k], check=True)

    try:
        wait_until(lambda: ":/home/user#" in screen(), 15, lambda: f"no prompt: {screen()}")
        keys("stty size", "Enter")
        wait_until(lambda: "30 100" in screen(), 10, lambda: f"wrong size: {screen()}")
        subprocess.run(["tmux", "resize-window", "-t", session, "-x", "120", "-y", "40"], check=True)
        time.sleep(0.3)
        keys("stty size", "Enter")
        wait_until(lambda: "40 120" in screen(), 10, lambda: f"resize not seen: {screen()}")
        # A full-screen program draws on the alternate screen and gives it back.
        keys("vi /tmp/full-screen-test", "Enter")
        wait_until(lambda: '"/tmp/full-screen-test"' in screen(), 10, lambda: f"vi did not draw: {screen()}")
        # Escape on its own: vi reads a quick Escape+':' as one Alt key.
        keys("Escape")
        time.sleep(0.5)
        keys(":q!", "Enter")

        def vi_gone():
            visible = subprocess.run(["tmux", "capture-pane", "-t", session, "-p"], capture_output=True, text=True).stdout
            lines = [l for l in visible.splitlines() if l.strip()]
            return lines and lines[-1].endswith("/home/user#") and not any(l.startswith("~") for l in lines)

        wait_until(vi_gone, 10, lambda: f"vi did not leave: {screen()}")
        # Back at the prompt (vi has fully exited) before Ctrl-D goes to the shell.
        keys("echo back-from-vi", "Enter")
        wait_until(lambda: "\nback-from-vi" in screen(), 10, lambda: f"no prompt after vi: {screen()}")
        keys("C-d")
        wait_until(lambda: "SHELL-EXIT=0" in screen(), 10, lambda: f"Ctrl-D did not end the shell: {screen()}")
        # The local terminal is back in cooked mode: typed text echoes and a line is a line.
        keys("echo cooked", "Enter")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


# ---------------------------------------------------------------------------------------------
# images


def image_user(node, tenant: str) -> dict:
    """The environment of a user with a key of a tenant of their own (so that the images
    other tests pull do not show), allowed images and sandboxes."""
    scopes = ["images:read", "images:write", "sandboxes:read", "sandboxes:write"]
    return cli_env(node, AI2IN_API_KEY=node.create_key(scopes, tenant=tenant)["key"])


def test_image_pull_ls_info_rm_with_json(node, registry):
    env = image_user(node, f"cli-images-{uuid.uuid4().hex[:8]}")
    ref = registry.refs["busybox"]
    pulled = json.loads(run_cli(["image", "pull", ref, "--json"], env).stdout)
    assert pulled["id"].startswith("img_") and pulled["ref"] == ref
    assert (pulled["digest"], pulled["source"], pulled["layers"]) == (registry.digests["busybox"], "pull", 1)
    # Pulled again (the tenant has it): the same image; plain output for people.
    plain = run_cli(["image", "pull", ref], env).stdout
    assert pulled["id"] in plain and ref in plain and pulled["digest"] in plain

    listed = json.loads(run_cli(["image", "ls", "--json"], env).stdout)["images"]
    assert [i["id"] for i in listed] == [pulled["id"]]
    header, row = run_cli(["image", "ls"], env).stdout.splitlines()
    assert header.split() == ["ID", "REF", "DIGEST", "SIZE", "LAYERS", "SOURCE", "CREATED"]
    assert row.split()[:3] == [pulled["id"], ref, pulled["digest"].removeprefix("sha256:")[:12]]
    assert " pull " in row
    info = json.loads(run_cli(["image", "info", ref, "--json"], env).stdout)
    assert (info["id"], info["config"]["env"]["AI2IN_TEST_IMAGE"]) == (pulled["id"], "busybox")
    assert "workdir:     /work" in run_cli(["image", "info", pulled["id"]], env).stdout

    sid = jq(".id", run_cli(["sandbox", "create", "--image", ref, "--json"], env).stdout)
    node.created[sid] = env["AI2IN_API_KEY"]
    assert run_cli(["exec", sid, "--", "cat", "/etc/ai2in-test-image"], env).stdout == "busybox\n"
    assert f"digest:    {pulled['digest']}" in run_cli(["sandbox", "info", sid], env).stdout
    # In use: 409, exit status 5, the sandbox named.
    p = run_cli(["image", "rm", pulled["id"]], env, check=False)
    assert p.returncode == 5 and sid in p.stderr, p.stderr
    run_cli(["sandbox", "rm", sid], env)

    p = run_cli(["image", "rm", "img_doesnotexist0000", ref, "--json"], env, check=False)
    assert p.returncode == 4 and "img_doesnotexist0000" in p.stderr and p.stdout == ""
    assert json.loads(run_cli(["image", "ls", "--json"], env).stdout)["images"] == []
    assert run_cli(["image", "info", pulled["id"]], env, check=False).returncode == 4


def test_image_import_from_a_file_and_stdin_and_pull_errors(node, registry, tmp_path):
    import image_fixtures

    env = image_user(node, f"cli-images-{uuid.uuid4().hex[:8]}")
    archive = image_fixtures.docker_save_archive(tmp_path / "app.tar")
    named = json.loads(run_cli(["image", "import", str(archive), "--ref", "cli-import:1", "--json"], env).stdout)
    assert (named["ref"], named["source"], named["layers"]) == ("docker.io/library/cli-import:1", "import", 1)
    with open(archive, "rb") as stdin:
        p = subprocess.run([str(binary_path()), "image", "import", "-"], env=env, stdin=stdin,
                           capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "docker.io/library/app:1" in p.stdout and named["digest"] in p.stdout
    refs = {i["ref"] for i in json.loads(run_cli(["image", "ls", "--json"], env).stdout)["images"]}
    assert refs == {"docker.io/library/cli-import:1", "docker.io/library/app:1"}
    run_cli(["image", "rm", "cli-import:1", "app:1"], env)

    (tmp_path / "junk.tar").write_bytes(b"not a tar archive")
    p = run_cli(["image", "import", str(tmp_path / "junk.tar"), "--ref", "junk:1"], env, check=False)
    assert p.returncode == 1 and p.stderr.startswith("error:"), p.stderr
    p = run_cli(["image", "import", str(tmp_path / "missing.tar")], env, check=False)
    assert p.returncode == 1 and "missing.tar" in p.stderr, p.stderr

    p = run_cli(["image", "pull", f"{registry.host}/nosuch:1"], env, check=False)
    assert p.returncode == 4 and "nosuch" in p.stderr, p.stderr
    p = run_cli(["image", "pull", "Not A Reference!"], env, check=False)
    assert p.returncode == 1 and p.stderr.startswith("error:"), p.stderr
    # A registry that cannot be reached: 502, exit status 1, the registry named.
    p = run_cli(["image", "pull", "127.0.0.1:1/app:1", "--json"], env, check=False)
    assert p.returncode == 1 and "127.0.0.1:1" in p.stderr and p.stdout == "", p.stderr
