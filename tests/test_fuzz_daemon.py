"""Fuzzing the daemon: one bad message stops nothing (issue 13, item 4).

A real daemon process with the real tiny.en model gets well over 10 000 malformed frames --
random bytes, truncated and bit-flipped messages, headers of the wrong types, valid msgpack of
the wrong shape for every message type, huge integers, NaN and infinities, deep nesting, long
strings, bytes, extension types, integer map keys, multi-frame messages, other versions -- in
bounded time.  Every frame must get exactly one final answer; afterwards the daemon answers
ping as ready, a real transcription succeeds, and its memory has not grown without bound.
The parsers themselves are fuzzed in-process first: they may raise only their own errors.
"""

from __future__ import annotations

import json
import random
import time

import msgpack
import zmq

from security_helpers import dealer, rss_bytes, running_daemon
from voiceman.daemonlink import protocol
from voiceman.daemonlink.protocol import Message
from voiceman_daemon.requests import RequestInvalid, parse_control, parse_work

SEED = 20260413
FRAMES = 20_000
TYPES = ["ping", "stats", "unload", "shutdown", "transcribe", "ser", "frobnicate", ""]
KINDS = {"transcribe": ("asr",), "ser": ("ser_dimensional", "ser_categorical")}
EDGE_NUMBERS = [
    0,
    -1,
    1,
    2**31,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    float("nan"),
    float("inf"),
    -float("inf"),
    -0.0,
    1e308,
    5e-324,
    True,
    False,
]


def random_value(rng: random.Random, depth: int = 0):
    roll = rng.random()
    if depth > 3 or roll < 0.35:
        return rng.choice(
            [
                None,
                rng.choice(EDGE_NUMBERS),
                rng.randint(-(10**6), 10**6),
                rng.random() * 1e4,
                "".join(chr(rng.randint(32, 0xD7FF)) for _ in range(rng.randint(0, 12))),
                rng.randbytes(rng.randint(0, 16)),
                "x" * rng.choice([1, 300, 5000]),
                msgpack.ExtType(rng.randint(0, 127), rng.randbytes(4)),
                msgpack.Timestamp(rng.randint(0, 2**32 - 1)),
            ]
        )
    if roll < 0.65:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    keys = rng.choice(
        [
            ["audio_path", "models", "options", "segments", "sha256", "kind", "brief", "id"],
            [rng.randint(-5, 5)],
            ["", "\x00", "a" * 100],
        ]
    )
    return {rng.choice(keys): random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def template(rng: random.Random, msg_type: str) -> dict:
    """A content that is valid, or nearly, for its type (never a real evidence file)."""
    path = rng.choice(
        [
            "/nonexistent/a.wav",
            "/etc/passwd",
            "http://127.0.0.1:9/x.wav",
            "relative.wav",
            "concat:/a.wav|/b.wav",
            "/tmp/../etc/shadow",
        ]
    )
    content = {
        "transcribe": {
            "audio_path": path,
            "models": {"asr": {"id": "/x", "revision": None}},
            "options": {"language": "en", "batch_size": 4, "word_timestamps": True},
            "sha256": "a" * 64,
        },
        "ser": {
            "audio_path": path,
            "segments": [{"start": 0.0, "end": 1.0}],
            "options": {"batch_size": 2},
            "models": {"ser_dimensional": {"id": "/m"}},
        },
        "stats": {"brief": True},
        "unload": {"kind": "asr"},
    }.get(msg_type, {})
    if rng.random() < 0.5:
        content.pop("models", None)  # then a well-formed request goes on to the I/O pool (and is refused there)
    return content


def mutate(rng: random.Random, content: dict) -> dict:
    """Replace, add or break one field, possibly nested."""
    content = json.loads(json.dumps(content))
    target = content
    path = []
    while isinstance(target, dict) and target and rng.random() < 0.6:
        key = rng.choice(list(target))
        if not isinstance(target[key], (dict, list)):
            break
        path.append(key)
        target = target[key] if isinstance(target[key], dict) else (target[key][0] if target[key] else {})
    if isinstance(target, dict):
        action = rng.random()
        if action < 0.6 and target:
            target[rng.choice(list(target))] = random_value(rng)
        elif action < 0.8:
            target[rng.choice(["junk", "audio_path ", "Models"])] = random_value(rng)
        elif target:
            del target[rng.choice(list(target))]
    return content


def header(rng: random.Random, msg_type) -> dict:
    h = {
        "version": protocol.PROTOCOL_VERSION,
        "msg_type": msg_type,
        "msg_id": rng.randbytes(8).hex(),
        "parent_id": None,
        "sent_unix": time.time(),
    }
    if rng.random() < 0.3:
        h[rng.choice(list(h))] = random_value(rng)
    return h


def stops_the_daemon(frame: bytes) -> bool:
    """A well-formed shutdown or unload: legitimate, so not part of the attack."""
    try:
        message = protocol.unpack(frame)
        if message.version == protocol.PROTOCOL_VERSION and message.msg_type in ("shutdown", "unload"):
            parse_control(message.msg_type, message.content)
            return True
    except (protocol.ProtocolError, RequestInvalid):
        pass
    return False


def frames(rng: random.Random, n: int):
    """(category, frame or list of frames): every category in turn, never a valid shutdown or unload."""
    for category, frame in _frames(rng, n):
        if isinstance(frame, bytes) and stops_the_daemon(frame):
            frame = frame + b"\x00"  # trailing garbage: a protocol error instead
        yield category, frame


def _frames(rng: random.Random, n: int):
    valid = protocol.pack(Message("transcribe", template(rng, "transcribe")))
    for i in range(n):
        category = i % 12
        if category == 0:
            yield "random bytes", rng.randbytes(rng.randint(0, 300))
        elif category == 1:
            yield "truncated", valid[: rng.randint(0, len(valid) - 1)]
        elif category == 2:
            flipped = bytearray(valid)
            for _ in range(rng.randint(1, 4)):
                flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
            yield "bit flips", bytes(flipped)
        elif category == 3:
            yield (
                "wrong header",
                msgpack.packb(
                    {"header": header(rng, rng.choice(TYPES + [5, None, ["ping"]])), "content": {}}, use_bin_type=True
                ),
            )
        elif category in (4, 5, 6):
            msg_type = TYPES[(i // 12) % len(TYPES)]
            content = mutate(rng, template(rng, msg_type))
            if msg_type in ("shutdown", "unload"):
                content["junk"] = 1  # never a valid shutdown or unload: the daemon must stay up with its model
            yield (
                f"wrong shape {msg_type or '(empty)'}",
                msgpack.packb({"header": header(rng, msg_type), "content": content}, use_bin_type=True),
            )
        elif category == 7:
            msg_type = rng.choice(TYPES)
            yield (
                "random content",
                msgpack.packb(
                    {"header": {**header(rng, msg_type), "version": 1}, "content": random_value(rng)}, use_bin_type=True
                ),
            )
        elif category == 8:
            depth = rng.choice([50, 200, 1000, 5000])
            yield "deep nesting", b"\x82\xa6header\x80\xa7content\x81\xa1x" + b"\x91" * depth + b"\xc0"
        elif category == 9:
            number = rng.choice(EDGE_NUMBERS)
            field = rng.choice(
                [
                    ("segments", [{"start": number, "end": number}]),
                    ("options", {"batch_size": number}),
                    ("sha256", number),
                    ("audio_path", number),
                ]
            )
            content = {**template(rng, "ser"), field[0]: field[1]}
            yield "edge numbers", msgpack.packb({"header": header(rng, "ser"), "content": content}, use_bin_type=True)
        elif category == 10:
            yield "multi-frame", [protocol.pack(Message("ping")), rng.randbytes(rng.randint(0, 20))]
        else:
            yield (
                "other version",
                protocol.pack(Message(rng.choice(TYPES) or "ping", version=rng.choice([0, 2, 99, 2**31 - 1]))),
            )


def test_parsers_raise_only_their_own_errors():
    rng = random.Random(SEED)
    checked = 0
    for _category, frame in frames(rng, 30_000):
        for part in frame if isinstance(frame, list) else [frame]:
            try:
                message = protocol.unpack(part)
            except protocol.ProtocolError:
                continue
            try:
                if message.msg_type in KINDS:
                    parse_work(message.msg_type, message.content, KINDS[message.msg_type])
                else:
                    parse_control(message.msg_type, message.content)
            except RequestInvalid:
                pass
            checked += 1
    assert checked > 10_000


def test_fuzzed_daemon_keeps_serving(tiny_model, speech_case):
    rng = random.Random(SEED)
    clip = str(speech_case / "call-01.wav")
    with running_daemon(tiny_model, [speech_case]) as (proc, client, log):
        client.call("transcribe", deadline_s=120, audio_path=clip)  # warm: its allocations are not growth
        rss_before = rss_bytes(proc.pid)
        sock = dealer(client.endpoint)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.setsockopt(zmq.SNDTIMEO, 10_000)  # a daemon that stops reading fails the test, not hangs it
        sent = answered = heartbeats = 0
        counts: dict[str, int] = {}
        started = time.monotonic()

        def drain(wait_ms: int) -> None:
            nonlocal answered, heartbeats
            while sock.poll(wait_ms):
                reply = protocol.unpack(sock.recv())
                if reply.msg_type == protocol.HEARTBEAT:
                    heartbeats += 1
                else:
                    answered += 1
                if answered >= sent:
                    wait_ms = 0

        try:
            for category, frame in frames(rng, FRAMES):
                counts[category] = counts.get(category, 0) + 1
                if isinstance(frame, list):
                    sock.send_multipart(frame)
                else:
                    sock.send(frame)
                sent += 1
                if sent % 200 == 0:
                    drain(0)
                    assert proc.poll() is None, f"daemon exited after {sent} frames: {log.read_text()[-3000:]}"
            deadline = time.monotonic() + 60
            while answered < sent and time.monotonic() < deadline:
                drain(500)
        finally:
            sock.close()
        elapsed = time.monotonic() - started
        assert proc.poll() is None, log.read_text()[-3000:]
        ping = client.ping()
        result = client.call("transcribe", deadline_s=120, audio_path=clip)
        rss_after = rss_bytes(proc.pid)
        stats = client.stats()
        figures = {
            "frames": sent,
            "answered": answered,
            "heartbeats": heartbeats,
            "seconds": round(elapsed, 1),
            "rss_before_mb": round(rss_before / 2**20, 1),
            "rss_after_mb": round(rss_after / 2**20, 1),
            "categories": counts,
        }
        print("fuzz figures:", json.dumps(figures))
        assert sent >= 10_000 and answered == sent, figures  # every frame got exactly one final answer
        assert elapsed < 180, figures
        assert ping["state"] == "ready" and not ping["load_errors"]
        assert "tomorrow" in " ".join(s["text"] for s in result["segments"]).lower()
        assert stats["inference_error"] is None and stats["models"]["asr"]["loads"] == 1
        assert rss_after - rss_before < 100 * 2**20, figures
        assert {"random bytes", "truncated", "deep nesting", "multi-frame", "other version"} <= set(counts)
