"""API keys (admin) and the mapping of error statuses to exceptions."""

from __future__ import annotations

import pytest

import ai2in
from ai2in import Client, Sandbox


def test_keys_create_list_revoke() -> None:
    with Client() as client:
        created = client.keys.create("sdk-test", ["sandboxes:read"])
        assert created.key.startswith("ai2in_live_") and created.id.startswith("key_")
        assert created.info.scopes == ["sandboxes:read"] and created.info.name == "sdk-test"
        assert created.id in [k.id for k in client.keys.list()]
        assert isinstance(Sandbox.list(api_key=created.key), list)
        client.keys.revoke(created.id)
        assert created.id not in [k.id for k in client.keys.list()]
    with pytest.raises(ai2in.AuthenticationError):
        Sandbox.list(api_key=created.key)


def test_other_tenant_sees_nothing(sbx: Sandbox) -> None:
    with Client() as client:
        # An admin lists and revokes only its own tenant's keys: this one revokes itself.
        other = client.keys.create("other", ["admin"], tenant="other")
    assert other.info.tenant == "other"
    with Client(api_key=other.key) as other_client:
        try:
            assert Sandbox.list(api_key=other.key) == []
            with pytest.raises(ai2in.NotFoundError):
                Sandbox.connect(sbx.id, api_key=other.key)
        finally:
            other_client.keys.revoke(other.id)


def test_read_only_key_gets_403(sbx: Sandbox, read_only_key: str) -> None:
    ro = Sandbox.connect(sbx.id, api_key=read_only_key)  # reading is allowed
    try:
        assert ro.info().id == sbx.id
        with pytest.raises(ai2in.PermissionDeniedError) as e:
            ro.run_code("1")
        assert e.value.status == 403 and "sandboxes:write" in e.value.message
    finally:
        ro.close()
    with pytest.raises(ai2in.PermissionDeniedError):
        Sandbox.create(api_key=read_only_key)
    with pytest.raises(ai2in.PermissionDeniedError):
        Client(api_key=read_only_key).keys.list()


def test_bad_fields_are_400(sbx: Sandbox) -> None:
    with pytest.raises(ai2in.BadRequestError) as e:
        Sandbox.create(cpu=-1)
    assert e.value.status == 400 and "cpu" in e.value.message
    assert e.value.body == {"error": e.value.message, "code": "invalid_request"}
    with pytest.raises(ai2in.BadRequestError, match="timeout_ms"):
        sbx.set_timeout(0)
    with pytest.raises(ai2in.BadRequestError, match="language"):
        sbx.run_code("1", "cobol")
