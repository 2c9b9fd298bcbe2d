"""The OpenAPI document: served as committed, and schemathesis finds no 5xx and no answer that
breaks it.

schemathesis generates requests from the served document (examples, boundary values, then
random ones, valid and invalid) against a real node. The path parameter `id` is pinned to a
live sandbox so that the in-sandbox routes are reached, not only their 404s. Every check runs
except `positive_data_acceptance`: some limits are node settings (memory, CPU, disk) or facts
of the sandbox (a path that is a directory), which a static schema cannot state.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Operations that change the pinned sandbox's life: run in a second pass, on another sandbox.
LIFECYCLE = ["sandboxes_delete", "sandboxes_pause", "sandboxes_timeout"]


def test_served_document_is_the_committed_one(node):
    served = node.get("/v1/openapi.json", key=None)  # public: no key needed
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("application/json")
    committed = json.loads((REPO / "docs" / "openapi.json").read_text())
    assert served.json() == committed
    assert served.json()["openapi"].startswith("3.1")


def test_every_route_is_documented_with_its_errors(node):
    doc = node.get("/v1/openapi.json", key=None).json()
    run = doc["paths"]["/v1/sandboxes/{id}/run"]["post"]
    assert run["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RunRequest"}
    assert {"200", "400", "401", "403", "404", "409", "410"} <= set(run["responses"])
    assert run["security"] == [{"bearer": []}]
    # An optional body is marked so; the create body may be left out.
    assert doc["paths"]["/v1/sandboxes"]["post"]["requestBody"]["required"] is False
    # A route the router serves but the document lacks would not be reachable from the SDKs.
    for path in ["/v1/sandboxes/{id}/fs/watch/{wid}/events", "/v1/sandboxes/{id}/pty/{pid}/ws",
                 "/v1/keys/{id}", "/metrics", "/healthz"]:
        assert path in doc["paths"], path


def schemathesis(node, tmp_path, sandbox_id: str, *args: str) -> subprocess.CompletedProcess:
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        f'headers = {{ Authorization = "Bearer {node.admin_key}" }}\n'
        f'[parameters]\n"path.id" = "{sandbox_id}"\n'
        # A pull of a generated reference reaches for a registry that does not exist here:
        # 502 naming it is the documented answer (a 500 still fails).
        '[[operations]]\ninclude-operation-id = "images_pull"\n'
        'checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", 502]\n'
        # Tar bodies are beyond schemathesis (no serializer); test_images.py imports real
        # archives and broken ones.
        '[[operations]]\ninclude-operation-id = "images_import"\nenabled = false\n')
    binary = shutil.which("schemathesis") or str(Path(sys.executable).with_name("schemathesis"))
    return subprocess.run(
        [binary, "--config-file", str(config), "run", f"{node.url}/v1/openapi.json",
         "--checks", "all", "--exclude-checks", "positive_data_acceptance",
         "--phases", "examples,coverage,fuzzing", "--max-examples", "15", "--seed", "1",
         "--request-timeout", "60", "--no-color", "--output-truncate", "false", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=900)


def test_schemathesis_finds_no_server_error_and_no_answer_off_schema(node_factory, tmp_path):
    pytest.importorskip("schemathesis")
    node = node_factory()
    pinned = node.create_sandbox(timeout_ms=3_600_000)["id"]
    excluded = [arg for op in LIFECYCLE for arg in ("--exclude-operation-id", op)]
    result = schemathesis(node, tmp_path, pinned, *excluded)
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
    # The pinned sandbox took all of it and still works.
    assert node.run(pinned, "echo alive").strip() == "alive"

    doomed = node.create_sandbox()["id"]
    included = [arg for op in LIFECYCLE for arg in ("--include-operation-id", op)]
    result = schemathesis(node, tmp_path, doomed, *included)
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
