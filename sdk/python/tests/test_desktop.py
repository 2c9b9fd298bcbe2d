"""Desktop sandboxes: a real X display driven through ``sbx.desktop`` (an xterm typed into,
screenshots, the pointer, the live view). Skipped when the node lacks Xvfb."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

import ai2in
from ai2in import AsyncSandbox, Sandbox, Window
from conftest import Node

WIDTH, HEIGHT = 1024, 768
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
T = TypeVar("T")


def _until(what: str, check: Callable[[], T | None], timeout: float = 20) -> T:
    """Polls ``check`` until it answers something other than ``None``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def desk(node: Node) -> Iterator[Sandbox]:
    """One desktop sandbox of WIDTH×HEIGHT for the module."""
    try:
        sbx = Sandbox.create(
            desktop={"width": WIDTH, "height": HEIGHT}, metadata={"suite": "sdk-python-desktop"}
        )
    except ai2in.BadRequestError as e:
        if "xvfb" in e.message.lower():
            pytest.skip(f"the node cannot run desktops: {e.message}")
        raise
    with sbx:
        yield sbx


def test_info_and_display(desk: Sandbox) -> None:
    assert desk.info().desktop
    info = desk.desktop.info()
    assert (info.display, info.width, info.height, info.dpi) == (":0", WIDTH, HEIGHT, 96)
    assert info.stream is None
    assert desk.commands.run("echo $DISPLAY").stdout == ":0\n"


def test_xterm_typed_into(desk: Sandbox) -> None:
    term = desk.desktop.launch("xterm")
    assert term.id.startswith("cmd_") and term.pid > 0
    assert term.id in [c.id for c in desk.commands.list()]  # a background command

    def xterm() -> Window | None:
        return next((w for w in desk.desktop.windows() if w.class_ == "XTerm"), None)

    window = _until("an XTerm window", xterm)
    assert window.width > 0 and window.height > 0
    desk.desktop.click(
        min(window.x + window.width // 2, WIDTH - 1), min(window.y + window.height // 2, HEIGHT - 1)
    )
    desk.desktop.type("echo hi > /tmp/from-sdk")
    desk.desktop.press("Return")

    def written() -> str | None:
        try:
            return desk.files.read("/tmp/from-sdk") or None
        except ai2in.NotFoundError:
            return None

    assert _until("/tmp/from-sdk", written) == "hi\n"
    term.kill()


def test_screenshot_is_a_png_of_the_screen(desk: Sandbox, tmp_path: Path) -> None:
    png = desk.desktop.screenshot(tmp_path / "screen.png")
    assert png[:8] == PNG_MAGIC and png[12:16] == b"IHDR"
    size = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert size == (WIDTH, HEIGHT)
    assert (tmp_path / "screen.png").read_bytes() == png


def test_pointer_and_keys(desk: Sandbox) -> None:
    desk.desktop.move(10, 20)
    assert desk.desktop.cursor() == (10, 20)
    desk.desktop.scroll("up", 2, x=30, y=40)
    assert desk.desktop.cursor() == (30, 40)
    desk.desktop.press("ctrl+a", "Escape")
    with pytest.raises(ai2in.BadRequestError, match=r"\bx\b"):
        desk.desktop.move(WIDTH, 0)
    with pytest.raises(ai2in.BadRequestError, match="NoSuchKey"):
        desk.desktop.press("Return", "NoSuchKey")
    with pytest.raises(ValueError):
        desk.desktop.press()


def test_stream_start_and_stop(desk: Sandbox) -> None:
    stream = desk.desktop.stream()
    assert stream.url.startswith("http") and "vnc.html" in stream.url
    assert len(stream.password) == 8 and stream.view_only is False
    running = desk.desktop.info().stream
    assert running is not None and running.url == stream.url
    desk.desktop.stop_stream()
    assert desk.desktop.info().stream is None
    with pytest.raises(ai2in.NotFoundError):
        desk.desktop.stop_stream()


def test_async_desktop(desk: Sandbox) -> None:
    async def main() -> None:
        sbx = await AsyncSandbox.connect(desk.id)
        try:
            assert (await sbx.desktop.info()).width == WIDTH
            await sbx.desktop.move(5, 6)
            assert await sbx.desktop.cursor() == (5, 6)
            assert (await sbx.desktop.screenshot()).startswith(PNG_MAGIC)
            assert isinstance(await sbx.desktop.windows(), list)
        finally:
            await sbx.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_no_desktop_is_bad_request(sbx: Sandbox) -> None:
    with pytest.raises(ai2in.BadRequestError, match="has no desktop"):
        sbx.desktop.screenshot()
    with pytest.raises(ai2in.BadRequestError, match="has no desktop"):
        sbx.desktop.click(1, 1)
