"""The cluster's nodes (admin): a node on its own is a cluster of one that lists itself, and,
drained, takes no new sandbox."""

from __future__ import annotations

import pytest

import ai2in
from ai2in import Client, Sandbox

from conftest import Node


def test_nodes_list_the_node_itself(sbx: Sandbox) -> None:
    with Client() as client:
        nodes = client.nodes.list()
    assert [n.id for n in nodes] == [sbx.info().node_id]
    me = nodes[0]
    assert me.status == "ready" and me.address
    assert 1 <= me.used.sandboxes <= me.capacity.sandboxes
    assert me.capacity.memory_bytes > 0 and me.capacity.cpu > 0
    assert me.last_seen_at.tzinfo is not None


def test_nodes_want_an_admin_key(read_only_key: str) -> None:
    with Client() as admin:
        (me,) = admin.nodes.list()
        with Client(api_key=read_only_key) as reader:
            with pytest.raises(ai2in.PermissionDeniedError) as e:
                reader.nodes.list()
            assert e.value.status == 403 and "admin" in e.value.message
            with pytest.raises(ai2in.PermissionDeniedError):
                reader.nodes.drain(me.id)
        assert admin.nodes.list()[0].status == "ready", "a refused drain drained the node"
        with pytest.raises(ai2in.NotFoundError):
            admin.nodes.drain("no-such-node")


def test_drained_node_refuses_creates(own_node: Node) -> None:
    with Client(api_key=own_node.admin_key, base_url=own_node.url) as client:
        (me,) = client.nodes.list()
        drained = client.nodes.drain(me.id)
        assert (drained.id, drained.status) == (me.id, "draining")
        with pytest.raises(ai2in.NodeAtCapacityError) as e:
            Sandbox.create(api_key=own_node.admin_key, base_url=own_node.url)
        assert e.value.status == 503 and "draining" in e.value.message
        assert [n.status for n in client.nodes.list()] == ["draining"]
