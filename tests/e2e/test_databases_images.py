"""Databases served from engine images (issue 15): `[databases.ENGINE] image = …` makes the node
pull that image (for itself, not a tenant), probe it once in a sandbox for the engine's versions
and what the servers' commands need, and run every server of that engine from it (PostgreSQL
and MySQL from a template data directory made once in a sandbox of the image).

The image is `engines` of image_fixtures.py: Debian trixie with PostgreSQL 17, MariaDB 11.8 and
Redis 8.0 as Debian packages them (the layout of the official postgres and mariadb images),
built by mmdebstrap and pushed to a real registry. None of these versions is the host's
(bookworm: 15, 10.11, 7.0), so a server that answers with them runs from the image; the
clients are the host's own (psql 15, mariadb 10.11, redis-cli 7.0). An image that cannot serve
(not in the registry, no server in it, or a hostile one whose programs print shell as their
version) is named in a 503 and serves nothing.
"""

from __future__ import annotations

import re

import pytest

from conftest import serve_refused
from test_databases import (
    DATABASES,
    Tracker,
    own_node,
    psql,
    mysql,
    read,
    kill_sandbox_from_the_host,
    node_sandbox_ids,
    redis_info,
    said,
    sandbox_of,
    served_engines,
    server_pid,
    wait_db_status,
    write,
)
from test_cli import cli
from test_storage import error_of
from e2e_util import random_token

#: What the engines image serves, by engine.
IMAGE_VERSIONS = {"postgres": "17", "mysql": "11.8-MariaDB", "redis": "8.0"}


@pytest.fixture(scope="module")
def engines_ref(registry) -> str:
    import image_fixtures

    return image_fixtures.push_all(registry, ("engines",))["engines"]


def images_config(refs: dict[str, str]) -> str:
    return "".join(f'[databases.{engine}]\nimage = "{ref}"\n' for engine, ref in refs.items())


@pytest.fixture(scope="module")
def image_node(engines_ref):
    n = own_node(images_config({e: engines_ref for e in IMAGE_VERSIONS}))
    try:
        yield n
    finally:
        n.cleanup()


@pytest.fixture
def t(image_node):
    tracker = Tracker(image_node)
    yield tracker
    tracker.cleanup()


def server_version(engine: str, url: str) -> str:
    """The version the server itself reports, through its url."""
    if engine == "postgres":
        r = psql(url, "show server_version")
        assert r.returncode == 0, said(r)
        return r.stdout.strip()
    if engine == "mysql":
        r = mysql(url, "select version()")
        assert r.returncode == 0, said(r)
        return r.stdout.strip()
    return redis_info(url)["redis_version"].strip()


def test_the_engines_are_the_images(image_node, engines_ref):
    served = served_engines(image_node)
    assert set(served) == set(IMAGE_VERSIONS), served
    for engine, version in IMAGE_VERSIONS.items():
        e = served[engine]
        assert e["versions"] == [version] and e["default"] == version, e
        assert e["image"] == engines_ref, f"the engine names its image: {e}"
    # The CLI's table says where each engine comes from.
    table = cli(image_node, "db", "engines").stdout.splitlines()
    assert table[0].split() == ["ENGINE", "VERSIONS", "DEFAULT", "FROM"], table
    rows = {line.split()[0]: line.split() for line in table[1:]}
    for engine, version in IMAGE_VERSIONS.items():
        assert rows[engine] == [engine, version, version, engines_ref], table


@pytest.mark.parametrize("engine", list(IMAGE_VERSIONS))
def test_a_database_of_an_image_serves_with_the_images_server(image_node, t, engine):
    db = t.create(engine)
    assert db["version"] == IMAGE_VERSIONS[engine], db
    reported = server_version(engine, db["url"])
    major = IMAGE_VERSIONS[engine].split("-")[0]
    assert reported.startswith(major + "."), \
        f"the {engine} server reports {reported!r}: not the image's {major} (the host's?)"
    value = "from-the-image-" + random_token(8)
    write(engine, db["url"], "k", value)
    assert read(engine, db["url"], "k") == value
    # The host's version is not served by this node: 400 listing what is.
    host_version = {"postgres": "15", "mysql": "10.11", "redis": "7.0"}[engine]
    r = image_node.post(DATABASES, json={"engine": engine, "version": host_version})
    assert IMAGE_VERSIONS[engine] in error_of(r, 400), r.text


def test_after_a_host_restart_the_server_comes_back_from_the_image_with_its_data(image_node, t):
    """Every sandbox killed from the host and the node started again: the server starts from
    the image's template (the stored digest, no pull), on its volume."""
    db = t.create("postgres")
    write("postgres", db["url"], "k", "kept")
    old = server_pid(image_node, db)
    image_node.stop()
    for sid in node_sandbox_ids(image_node) | {sandbox_of(old)}:
        kill_sandbox_from_the_host(sid)
    image_node.restart()
    wait_db_status(image_node, db["id"], "available", timeout=90)
    assert read("postgres", db["url"], "k") == "kept"
    assert server_version("postgres", db["url"]).startswith("17."), "after the restart"
    assert server_pid(image_node, db) != old


def test_an_image_that_cannot_serve_is_named_and_the_others_still_serve(registry):
    """redis from busybox (no redis-server in it), mysql from an image the registry lacks:
    both left out of the engines, their creates 503 naming the image and why; postgres, from
    the host's packages, still serves."""
    busybox = registry.refs["busybox"]
    missing = f"{registry.host}/no-such-engine:1"
    n = own_node(images_config({"mysql": missing, "redis": busybox}))
    try:
        served = served_engines(n)
        assert set(served) == {"postgres"}, served
        assert "image" not in served["postgres"], served
        t = Tracker(n)
        try:
            db = t.create("postgres")
            assert server_version("postgres", db["url"]).startswith(served["postgres"]["default"] + ".")
        finally:
            t.cleanup()
        msg = error_of(n.post(DATABASES, json={"engine": "redis"}), 503)
        assert busybox in msg and "[databases.redis] image" in msg and "redis-server" in msg, msg
        msg = error_of(n.post(DATABASES, json={"engine": "mysql"}), 503)
        assert missing in msg and "[databases.mysql] image" in msg, msg
    finally:
        n.cleanup()


def test_a_bad_image_reference_stops_the_node_at_start(tmp_path):
    stderr = serve_refused('[databases.postgres]\nimage = "Not A Reference!"\n', tmp_path)
    assert re.search(r"\[databases\.postgres\] image .*is not an image reference", stderr), stderr


def test_a_hostile_images_probe_output_makes_no_version(registry, busybox_layer_tar, tmp_path):
    """An engine image is a registry's content: what its programs print is not trusted. A
    `redis-server` whose version carries shell and a PostgreSQL directory named with a
    command substitution make no engine (503: the image has no version of it), run nothing
    on the host, and leave the node serving."""
    import registry as oci

    marker = tmp_path / "pwned"
    payload = f"$(touch {marker})"
    layer = oci.tar_layer([
        oci.Dir("usr"), oci.Dir("usr/bin"),
        oci.File("usr/bin/redis-server", f"#!/bin/sh\necho 'Redis server v=7.0;touch {marker} sha=0'\n",
                 mode=0o755),
        oci.File("usr/bin/redis-cli", "#!/bin/sh\n", mode=0o755),
        oci.Dir("usr/lib"), oci.Dir("usr/lib/postgresql"), oci.Dir(f"usr/lib/postgresql/1{payload}"),
        oci.Dir(f"usr/lib/postgresql/1{payload}/bin"),
        *[oci.File(f"usr/lib/postgresql/1{payload}/bin/{tool}", "#!/bin/sh\n", mode=0o755)
          for tool in ("postgres", "initdb", "pg_isready", "psql")],
    ])
    layers = [busybox_layer_tar, layer]
    oci.push_layers(registry.host, "hostile-engine", "1", layers,
                    oci.image_config(layers, Cmd=["/bin/sh"]))
    ref = f"{registry.host}/hostile-engine:1"
    n = own_node(images_config({"postgres": ref, "redis": ref}))
    try:
        served = served_engines(n)
        assert not {"postgres", "redis"} & set(served), served
        for engine in ("postgres", "redis"):
            msg = error_of(n.post(DATABASES, json={"engine": engine}), 503)
            assert ref in msg and "cannot be used: it has no " in msg, msg
        assert not marker.exists(), "the probe's output ran on the host"
        assert n.healthy()
    finally:
        n.cleanup()
