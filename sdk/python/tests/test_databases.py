"""Managed databases against the real node, through real clients (``psql``, ``redis-cli``,
``mariadb``):
the engines; create a PostgreSQL database and use its url (a table written and read); the
default and a given name; a password reset (the old url refused at once, the new one working,
the data kept); list and get; delete; the errors (an unknown engine, whose message lists
those served, a bad version or name, an unknown id); scopes; the async client; and Redis
and MySQL when the node serves them. Every test deletes the databases it created."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

import ai2in
from ai2in import AsyncClient, AsyncDatabase, Client, Database, EngineInfo

from conftest import Node

USERNAME = re.compile(r"^u_[a-z0-9]{12}$")
PASSWORD = re.compile(r"^[A-Za-z0-9]{32}$")


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 120))


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (.ci/run installs it)", pytrace=False)
    return path


def _client_env() -> dict[str, str]:
    """The environment without PG* variables (the url alone must connect) and with a bound
    on connecting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGCONNECT_TIMEOUT"] = "10"
    return env


def psql(url: str, *commands: str) -> subprocess.CompletedProcess[str]:
    """``psql "$url" -c …`` for each command: unaligned, tuples only, stopping at an error."""
    argv = [_tool("psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", url]
    for c in commands:
        argv += ["-c", c]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, env=_client_env())


def redis_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``redis-cli -u "$url" …`` (``--no-auth-warning``: the password is in the url)."""
    argv = [_tool("redis-cli"), "--no-auth-warning", "-u", url, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    """The output of a client that must have succeeded."""
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout.strip()


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with Client() as c:
        yield c


@pytest.fixture(scope="module")
def engines(client: Client) -> dict[str, EngineInfo]:
    return {e.engine: e for e in client.databases.engines()}


@pytest.fixture
def create(client: Client) -> Iterator[Callable[..., Database]]:
    """Creates databases (``create(engine, **options)``) and deletes them after the test, if
    the test did not."""
    made: list[Database] = []

    def _create(engine: str, **options: Any) -> Database:
        db = client.databases.create(engine, **options)
        made.append(db)
        return db

    yield _create
    for db in made:
        try:
            db.delete()
        except ai2in.NotFoundError:
            pass


def test_engines_list_postgres(engines: dict[str, EngineInfo]) -> None:
    assert "postgres" in engines, engines
    for e in engines.values():
        assert e.engine in ("postgres", "mysql", "redis")
        assert e.versions and e.default in e.versions
        # The SDK tests' node serves from the host's packages: no engine image.
        assert e.image is None, e


def test_create_connect_reset_list_get_delete(
    client: Client, create: Callable[..., Database], engines: dict[str, EngineInfo]
) -> None:
    before = dt.datetime.now(dt.timezone.utc)
    db = create("postgres")
    assert isinstance(db, Database) and db.id.startswith("db_")
    assert (db.engine, db.version, db.name, db.status) == (
        "postgres", engines["postgres"].default, "app", "available"
    )
    assert USERNAME.match(db.username) and PASSWORD.match(db.password), db.info
    assert 0 < db.port < 65536 and db.host
    assert db.url == f"postgres://{db.username}:{db.password}@{db.host}:{db.port}/app"
    assert db.resources.memory_bytes > 0 and db.resources.disk_bytes > 0
    assert before - dt.timedelta(seconds=5) <= db.created_at <= before + dt.timedelta(minutes=1)
    assert db.password not in repr(db)

    # The url alone connects: a table written and read back.
    assert ok(psql(
        db.url,
        "create table t (id int primary key, word text)",
        "insert into t values (1, 'hello'), (2, 'world')",
        "select string_agg(word, ' ' order by id) from t",
    )).splitlines()[-1] == "hello world"
    assert ok(psql(db.url, "select current_database(), current_user")) == f"app|{db.username}"

    # Listed and found by id and by the object, the password included.
    assert db.id in [d.id for d in client.databases.list()]
    for key in (db.id, db, db.info):
        got = client.databases.get(key)
        assert isinstance(got, Database) and got.info == db.info
    assert db.refresh() is db and db.status == "available"

    # A new password: the old url is refused at once, the new one works, the data is kept.
    old, old_password = db.url, db.password
    assert db.reset_password() is db
    assert PASSWORD.match(db.password) and db.password != old_password
    assert db.url == f"postgres://{db.username}:{db.password}@{db.host}:{db.port}/app"
    assert client.databases.get(db.id).info == db.info
    refused = psql(old, "select 1")
    assert refused.returncode != 0 and "password authentication failed" in refused.stderr
    assert ok(psql(db.url, "select count(*) from t")) == "2"
    again = client.databases.reset_password(db.id)
    assert isinstance(again, Database) and again.password != db.password
    assert psql(db.url, "select 1").returncode != 0
    assert ok(psql(again.url, "select word from t where id = 2")) == "world"

    db.delete()
    with pytest.raises(ai2in.NotFoundError):
        client.databases.get(db.id)
    with pytest.raises(ai2in.NotFoundError):
        db.refresh()
    with pytest.raises(ai2in.NotFoundError):
        client.databases.delete(db.id)
    assert db.id not in [d.id for d in client.databases.list()]
    assert psql(again.url, "select 1").returncode != 0


def test_a_name_and_a_version_given_and_with_deletes(
    client: Client, engines: dict[str, EngineInfo]
) -> None:
    version = engines["postgres"].versions[-1]
    with client.databases.create("postgres", version=version, name="shop_2") as db:
        assert (db.name, db.version, db.status) == ("shop_2", version, "available")
        assert db.url.endswith(f":{db.port}/shop_2")
        assert ok(psql(db.url, "select current_database()")) == "shop_2"
    # `with` deleted it.
    with pytest.raises(ai2in.NotFoundError):
        client.databases.get(db.id)


def test_bad_requests(client: Client, engines: dict[str, EngineInfo]) -> None:
    before = [d.id for d in client.databases.list()]
    with pytest.raises(ai2in.BadRequestError) as e:
        client.databases.create("oracle")
    assert e.value.status == 400
    for served in engines:  # the message lists what the node serves
        assert served in e.value.message, e.value.message
    with pytest.raises(ai2in.BadRequestError) as e:
        client.databases.create("postgres", version="1")
    assert engines["postgres"].default in e.value.message, e.value.message
    for name in ("Shop", "1shop", "shop-1", "a" * 64, ""):
        with pytest.raises(ai2in.BadRequestError) as e:
            client.databases.create("postgres", name=name)
        assert "name" in e.value.message, e.value.message
    with pytest.raises(ai2in.NotFoundError):
        client.databases.get("db_doesnotexist0000000")
    with pytest.raises(ai2in.NotFoundError):
        client.databases.reset_password("db_doesnotexist0000000")
    with pytest.raises(ai2in.NotFoundError):
        client.databases.delete("db_doesnotexist0000000")
    assert [d.id for d in client.databases.list()] == before


def test_scopes(
    client: Client, create: Callable[..., Database], read_only_key: str
) -> None:
    db = create("postgres")
    reader = client.keys.create("databases-reader", ["databases:read"])
    other = client.keys.create("other-databases", ["admin"], tenant="databases-other")
    try:
        with Client(api_key=read_only_key) as none:  # sandboxes:read only
            with pytest.raises(ai2in.PermissionDeniedError):
                none.databases.list()
        with Client(api_key=reader.key) as ro:
            assert db.id in [d.id for d in ro.databases.list()]
            assert ro.databases.get(db.id).url == db.url
            assert "postgres" in [e.engine for e in ro.databases.engines()]
            with pytest.raises(ai2in.PermissionDeniedError):
                ro.databases.create("postgres")
            with pytest.raises(ai2in.PermissionDeniedError):
                ro.databases.reset_password(db.id)
            with pytest.raises(ai2in.PermissionDeniedError):
                ro.databases.delete(db.id)
        with Client(api_key=other.key) as stranger:
            assert db.id not in [d.id for d in stranger.databases.list()]
            for call in (stranger.databases.get, stranger.databases.reset_password,
                         stranger.databases.delete):
                with pytest.raises(ai2in.NotFoundError):
                    call(db.id)
    finally:
        client.keys.revoke(reader.id)
        client.keys.revoke(other.id)
    assert client.databases.get(db.id).url == db.url


def test_async_databases(node: Node) -> None:
    async def main() -> None:
        async with AsyncClient() as client:
            assert "postgres" in [e.engine for e in await client.databases.engines()]
            async with await client.databases.create("postgres", name="async_db") as db:
                assert isinstance(db, AsyncDatabase) and db.status == "available"
                assert db.name == "async_db" and db.url.endswith("/async_db")
                out = await asyncio.to_thread(psql, db.url, "select 6 * 7")
                assert ok(out) == "42"
                assert db.id in [d.id for d in await client.databases.list()]
                got = await client.databases.get(db.id)
                assert isinstance(got, AsyncDatabase) and got.info == db.info
                old = db.url
                assert await db.reset_password() is db and db.url != old
                assert (await asyncio.to_thread(psql, old, "select 1")).returncode != 0
                assert ok(await asyncio.to_thread(psql, db.url, "select 1")) == "1"
                assert (await db.refresh()).url == db.url
                other = await client.databases.reset_password(db)
                assert isinstance(other, AsyncDatabase) and other.url != db.url
            # `async with` deleted it.
            with pytest.raises(ai2in.NotFoundError):
                await client.databases.get(db.id)

    run(main)


def test_redis(client: Client, create: Callable[..., Database],
               engines: dict[str, EngineInfo]) -> None:
    if "redis" not in engines:
        pytest.skip("this node does not serve redis")
    db = create("redis")
    assert (db.engine, db.version, db.status) == ("redis", engines["redis"].default, "available")
    assert USERNAME.match(db.username) and PASSWORD.match(db.password), db.info
    assert db.url == f"redis://{db.username}:{db.password}@{db.host}:{db.port}/0"
    assert ok(redis_cli(db.url, "set", "k", "v")) == "OK"
    assert ok(redis_cli(db.url, "get", "k")) == "v"

    old = db.url
    db.reset_password()
    refused = redis_cli(old, "get", "k")
    assert "v" not in refused.stdout.split(), refused
    assert re.search("WRONGPASS|NOAUTH|AUTH failed", refused.stdout + refused.stderr), refused
    assert ok(redis_cli(db.url, "get", "k")) == "v"
    db.delete()
    with pytest.raises(ai2in.NotFoundError):
        client.databases.get(db.id)


def mariadb(db: Database, sql: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    """The ``mariadb`` client on ``db``'s address as its user (the password in ``MYSQL_PWD``,
    not on the command line), batch mode."""
    argv = [_tool("mariadb"), "--no-defaults", "--connect-timeout=10", "-h", db.host, "-P", str(db.port),
            "-u", db.username, "-N", "-B", db.name, "-e", sql]
    env = {**os.environ, "MYSQL_PWD": password if password is not None else db.password}
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)


def test_mysql(client: Client, create: Callable[..., Database],
               engines: dict[str, EngineInfo]) -> None:
    if "mysql" not in engines:
        pytest.skip("this node does not serve mysql")
    served = engines["mysql"].default
    db = create("mysql", name="shop", version=served.removesuffix("-MariaDB"))
    assert (db.engine, db.version, db.name, db.status) == ("mysql", served, "shop", "available")
    assert db.url == f"mysql://{db.username}:{db.password}@{db.host}:{db.port}/shop"
    ok(mariadb(db, "create table t (x int); insert into t values (41), (1)"))
    assert ok(mariadb(db, "select sum(x) from t")) == "42"
    assert ok(mariadb(db, "select current_user()")) == f"{db.username}@%"

    old = db.password
    db.reset_password()
    assert db.password != old and db.url.endswith(f"@{db.host}:{db.port}/shop")
    refused = mariadb(db, "select 1", password=old)
    assert refused.returncode != 0 and "Access denied" in refused.stderr, refused
    assert ok(mariadb(db, "select sum(x) from t")) == "42"
    db.delete()
    with pytest.raises(ai2in.NotFoundError):
        client.databases.get(db.id)
