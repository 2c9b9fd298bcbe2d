"""Every code example in `docs/` runs, against a fresh node, as a reader would run it.

Fenced blocks tagged `python`, `typescript` and `bash` are programs: each runs with
`AI2IN_BASE_URL` and `AI2IN_API_KEY` set to the node's admin key, `REGISTRY` to a local
registry holding the test images (`$REGISTRY/busybox:1`, `$REGISTRY/python:1`; see
`registry.py`) and the `ai2in` binary under test first on PATH, and must exit 0. A block preceded by the line `<!-- not run -->` is
skipped (starting a node with sudo, browser snippets); other tags (`text`, `toml`, `json`,
`rust`: the Rust examples are compiled as `crates/client/examples`) are not programs.

- python: the interpreter running the tests, with the SDK installed (`pip install ./sdk/python`);
- typescript: written under `sdk/typescript/.examples/` and run with tsx there, so that
  `@ai2in/sdk` resolves to the package (`npm ci` in `sdk/typescript` first);
- bash: `bash -euo pipefail`.

The API reference is rendered from the OpenAPI document: the committed page must be current.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import binary_path

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
TYPESCRIPT = REPO / "sdk" / "typescript"
RUNNABLE = {"python", "typescript", "bash"}
NOT_RUN = "<!-- not run -->"
TIMEOUT = 180

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.M | re.S)


@dataclass
class Block:
    page: str
    line: int
    lang: str
    code: str

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"


def blocks() -> list[Block]:
    found = []
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text()
        for m in FENCE.finditer(text):
            lang = m.group(1)
            before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
            if lang in RUNNABLE and before != NOT_RUN:
                line = text.count("\n", 0, m.start()) + 1
                found.append(Block(page.name, line, lang, m.group(2)))
    return found


@pytest.fixture(scope="module")
def cli_dir(tmp_path_factory) -> Path:
    """A directory whose `ai2in` is the binary under test, for PATH."""
    bin_dir = tmp_path_factory.mktemp("bin")
    (bin_dir / "ai2in").symlink_to(binary_path())
    return bin_dir


@pytest.mark.parametrize("block", blocks(), ids=lambda b: b.name)
def test_example_runs(block: Block, node, registry, cli_dir, tmp_path):
    env = dict(os.environ)
    env.update(
        AI2IN_BASE_URL=node.url,
        AI2IN_API_KEY=node.admin_key,
        REGISTRY=registry.host,
        PATH=f"{cli_dir}{os.pathsep}{env.get('PATH', '')}",
        NO_COLOR="1",
    )
    if block.lang == "python":
        argv, cwd = [sys.executable, "-"], tmp_path
        stdin = block.code
    elif block.lang == "bash":
        argv, cwd = ["bash", "-euo", "pipefail", "-s"], tmp_path
        stdin = block.code
    else:
        if not (TYPESCRIPT / "node_modules").is_dir():
            pytest.fail("run `npm ci` in sdk/typescript first: the TypeScript examples need it",
                        pytrace=False)
        examples = TYPESCRIPT / ".examples"
        examples.mkdir(exist_ok=True)
        script = examples / f"{block.page.removesuffix('.md')}-{block.line}.ts"
        script.write_text(block.code)
        argv, cwd, stdin = [str(TYPESCRIPT / "node_modules" / ".bin" / "tsx"), str(script)], TYPESCRIPT, None
    done = subprocess.run(argv, input=stdin, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, (
        f"{block.name} ({block.lang}) exited with {done.returncode}\n--- code ---\n{block.code}"
        f"\n--- stdout ---\n{done.stdout[-4000:]}\n--- stderr ---\n{done.stderr[-4000:]}")


def test_the_docs_have_examples_of_every_kind():
    kinds = {b.lang for b in blocks()}
    assert kinds == RUNNABLE, f"examples found: {kinds}"


def test_api_reference_is_rendered_from_the_current_openapi_document():
    rendered = subprocess.run([sys.executable, str(REPO / "scripts" / "api-reference.py")],
                              cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert rendered == (DOCS / "api-reference.md").read_text(), (
        "docs/api-reference.md is stale: run `python3 scripts/api-reference.py > "
        "docs/api-reference.md` and commit it")
