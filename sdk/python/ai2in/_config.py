"""Where the node is and which key to use: explicit arguments, else the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import Ai2inError

DEFAULT_BASE_URL = "http://127.0.0.1:4747"


@dataclass(frozen=True)
class Config:
    """A resolved node address and API key."""

    api_key: str
    base_url: str


def resolve(api_key: str | None = None, base_url: str | None = None) -> Config:
    """``api_key``/``base_url`` if given, else ``AI2IN_API_KEY``/``AI2IN_BASE_URL`` (the base
    URL defaults to ``http://127.0.0.1:4747``)."""
    key = api_key or os.environ.get("AI2IN_API_KEY")
    if not key:
        raise Ai2inError("no API key: pass api_key=... or set AI2IN_API_KEY")
    url = base_url or os.environ.get("AI2IN_BASE_URL") or DEFAULT_BASE_URL
    return Config(api_key=key, base_url=url.rstrip("/"))
