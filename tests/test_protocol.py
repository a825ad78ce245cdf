"""The wire protocol: pack/unpack are inverses; the daemon answers bad input with an error
reply over a real ZeroMQ socket instead of crashing or going silent."""

from __future__ import annotations

import threading

import msgpack
import pytest
import zmq

from voiceman.daemonlink import protocol
from voiceman.daemonlink.client import DaemonClient, DaemonUnavailable, RequestFailed
from voiceman.daemonlink.protocol import Message
from voiceman_daemon.core import DaemonCore
from voiceman_daemon.registry import ModelRegistry
from voiceman_daemon.server import DaemonServer


@pytest.mark.parametrize(
    "content",
    [
        {},
        {"audio_path": "/x/y.wav", "options": {"language": None, "batch_size": 8}},
        {"nested": {"list": [1, 2.5, "ü", None, True]}, "bytes": b"\x00\x01"},
    ],
)
def test_pack_unpack_are_inverses(content):
    msg = Message("transcribe", content, parent_id="abc")
    back = protocol.unpack(protocol.pack(msg))
    assert back == msg
    assert protocol.pack(back) == protocol.pack(msg)


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\xc1",
        msgpack.packb([1, 2]),
        msgpack.packb({"header": 3}),
        msgpack.packb({"header": {"msg_type": "ping"}}),
    ],
)
def test_unpack_rejects_malformed_frames(frame):
    with pytest.raises(protocol.ProtocolError):
        protocol.unpack(frame)


def test_no_pickle_on_the_wire():
    frame = protocol.pack(Message("ping", {"x": 1}))
    assert b"\x80\x04" not in frame[:2]  # pickle protocol 4 magic
    assert msgpack.unpackb(frame)["header"]["version"] == protocol.PROTOCOL_VERSION


@pytest.fixture
def server(runtime_dir):
    """A real daemon server (no models) on an ipc socket, served from a thread."""
    endpoint = f"ipc://{runtime_dir / 'proto.sock'}"
    srv = DaemonServer(endpoint, DaemonCore(ModelRegistry({}), default_specs={}), heartbeat_interval_s=0.2)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    client = DaemonClient(endpoint, connect_timeout_s=5)
    assert client.ping()["protocol_version"] == protocol.PROTOCOL_VERSION
    yield srv, client
    srv.request_stop()
    thread.join(10)


def _raw_exchange(endpoint: str, frame: bytes) -> Message:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        sock.send(frame)
        assert sock.poll(5000), "daemon did not answer"
        return protocol.unpack(sock.recv())
    finally:
        sock.close()


def test_roundtrip_over_real_socket(server):
    srv, client = server
    reply = client.call(protocol.STATS, deadline_s=5)
    assert reply["state"] == "ready" and reply["models"] == {}


def test_wrong_protocol_version_gets_error_reply_not_a_crash(server):
    srv, client = server
    bad = Message("ping", version=protocol.PROTOCOL_VERSION + 41)
    reply = _raw_exchange(client.endpoint, protocol.pack(bad))
    assert reply.msg_type == protocol.ERROR and reply.parent_id == bad.msg_id
    assert reply.content["scope"] == "protocol" and "version 42" in reply.content["reason"]
    assert client.ping()["state"] == "ready"  # still serving


def test_garbage_frame_and_unknown_type_get_error_replies(server):
    srv, client = server
    assert _raw_exchange(client.endpoint, b"\x00garbage").content["scope"] == "protocol"
    with pytest.raises(RequestFailed, match="unknown request type 'frobnicate'"):
        client.call("frobnicate", deadline_s=5)
    with pytest.raises(RequestFailed, match=r"no asr\S* model configured"):
        client.call("transcribe", deadline_s=5, audio_path="/nonexistent.wav")
    assert client.ping()["state"] == "ready"


def test_unreachable_endpoint_is_reported_in_one_line_with_bounded_retries(runtime_dir):
    endpoint = f"ipc://{runtime_dir / 'nobody.sock'}"
    client = DaemonClient(endpoint, connect_timeout_s=0.5, retries=1)
    with pytest.raises(DaemonUnavailable) as err:
        client.ping()
    message = str(err.value)
    assert endpoint in message and "\n" not in message
