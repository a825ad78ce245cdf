"""Security of the daemon against its requests (issue 13, items 1, 3, 4 and the daemon half of
5), tried on a real daemon process with the real tiny.en model wherever a row of the issue's
table says it was observed there:

- models: only a kind's configured id or a directory inside daemon.model_roots; an attacker's
  SpeechBrain directory is refused and none of its code runs; a pinned directory that changed
  is refused before its code runs; a failed load keeps the held model serving;
- one bad message stops nothing: the observed crashers get error replies, oversized frames
  are dropped, the daemon keeps answering;
- confined paths: URL / concat: / subfile / traversal / symlink out / outside the roots /
  FIFO / directory / device are refused, naming only the request's own file;
- custody: the daemon hashes the bytes it decodes and refuses bytes that differ from ingest.
"""

from __future__ import annotations

import http.server
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from security_helpers import evil_speechbrain_dir, exchange, rss_bytes, running_daemon
from voiceman.audio import decode_fd
from voiceman.daemonlink import protocol
from voiceman.daemonlink.client import RequestFailed
from voiceman.daemonlink.protocol import Message
from voiceman.demo import encode
from voiceman.hashing import sha256_file
from voiceman_daemon.confinement import CaseRoots, ModelRefused, sha256_tree
from voiceman_daemon.core import DaemonCore
from voiceman_daemon.handlers import Evidence, build_handlers
from voiceman_daemon.registry import ModelLoadError, ModelRegistry, ModelSpec, ModelTrust
from voiceman_daemon.requests import RequestInvalid, SerRequest, TranscribeRequest

SR = 16_000


def _words(result) -> str:
    return " ".join(s["text"] for s in result["segments"]).lower()


@pytest.fixture(scope="module")
def layout(tmp_path_factory, speech_case, tiny_model):
    """case/ (the daemon's only case root), outside/ (evidence of another case), models/ (the
    only model root: a copy of tiny.en and a broken directory), an attacker's directory."""
    base = tmp_path_factory.mktemp("security")
    case, outside, models = base / "case", base / "outside", base / "models"
    for d in (case, outside, models):
        d.mkdir()
    shutil.copy(speech_case / "call-01.wav", case / "call-01.wav")
    shutil.copy(speech_case / "call-02.mp3", case / "call-02.mp3")
    shutil.copy(speech_case / "call-03.m4a", outside / "secret.m4a")
    shutil.copytree(tiny_model, models / "tiny-copy", copy_function=os.link)
    (models / "broken").mkdir()
    (models / "broken" / "model.bin").write_bytes(b"not a model")
    return {"base": base, "case": case, "outside": outside, "models": models}


@pytest.fixture(scope="module")
def daemon(layout, tiny_model):
    with running_daemon(tiny_model, [layout["case"]], [layout["models"]]) as (proc, client, log):
        yield proc, client, log


def _refusal(client, msg_type="transcribe", **content) -> RequestFailed:
    with pytest.raises(RequestFailed) as err:
        client.call(msg_type, deadline_s=60, **content)
    return err.value


# ---------------------------------------------------------------------------- one bad message
@pytest.mark.parametrize(
    "content, where",
    [
        ({"models": ["asr"]}, "must be a map"),  # observed: the daemon process exited
        ({"models": {"asr": 5}}, "must be a map"),  # observed: the daemon process exited
        ({"models": {"asr": {}}}, "missing id"),  # observed: the daemon process exited
        ({"options": [1, 2]}, "must be a map"),  # observed: the inference thread died
        ({"options": {"batch_size": "8"}}, "must be an integer"),
        ({"options": {"batch_size": True}}, "must be an integer"),
        ({"options": {"batch_size": 2**63}}, "between"),
        ({"options": {"beam_size": 1}}, "unknown field"),
        ({"options": {"language": "en; rm -rf /"}}, "expected form"),
        ({"models": {"ser_categorical": {"id": "x"}}}, "cannot use model kind"),
        ({"sha256": "abc"}, "expected form"),
        ({"frobnicate": 1}, "unknown field"),
        ({"audio_path": 7}, "must be a string"),
        ({"audio_path": "/x\x00y.wav"}, "NUL"),
        ({"audio_path": "/" + "a" * 5000}, "characters long"),
    ],
)
def test_observed_crashers_and_malformed_fields_get_protocol_errors(daemon, layout, content, where):
    proc, client, log = daemon
    good = str(layout["case"] / "call-01.wav")
    err = _refusal(client, **{"audio_path": good, **content})
    assert err.scope == "protocol" and where in err.reason, err.reason
    assert proc.poll() is None
    ping = client.ping()
    assert ping["state"] == "ready" and not ping["load_errors"]


def test_after_the_crashers_the_daemon_still_transcribes(daemon, layout):
    proc, client, log = daemon
    for content in ({"models": ["asr"]}, {"models": {"asr": 5}}, {"models": {"asr": {}}}, {"options": [1, 2]}):
        _refusal(client, audio_path=str(layout["case"] / "call-01.wav"), **content)
    result = client.call("transcribe", deadline_s=120, audio_path=str(layout["case"] / "call-01.wav"))
    assert "tomorrow" in _words(result)
    assert client.stats()["inference_error"] is None and proc.poll() is None


@pytest.mark.parametrize(
    "segments, where",
    [
        ([{"start": float("nan"), "end": 1.0}], "finite"),
        ([{"start": 0.0, "end": float("inf")}], "finite"),
        ([{"start": 2.0, "end": 1.0}], "before start"),
        ([{"start": -1, "end": 1}], "between"),
        ([{"start": 0, "end": 1, "speaker": "A"}], "unknown field"),
        ([[0, 1]], "must be a map"),
        ("0-1", "must be a list"),
        ([{"start": 0, "end": 1}] * 20_001, "at most 20000"),
    ],
)
def test_ser_segments_are_validated(daemon, layout, segments, where):
    proc, client, log = daemon
    err = _refusal(client, "ser", audio_path=str(layout["case"] / "call-01.wav"), segments=segments)
    assert err.scope == "protocol" and where in err.reason, err.reason


@pytest.mark.parametrize(
    "frame, where",
    [
        (protocol.pack(Message("ping", {"x": 1})), "unknown field"),
        (protocol.pack(Message("stats", {"brief": "yes"})), "true or false"),
        (protocol.pack(Message("unload", {"kind": ["asr"]})), "must be a string"),
        (protocol.pack(Message("shutdown", {"now": True})), "unknown field"),
    ],
)
def test_control_messages_are_validated(daemon, frame, where):
    proc, client, log = daemon
    reply = exchange(client.endpoint, frame)
    assert reply.msg_type == protocol.ERROR and reply.content["scope"] == "protocol"
    assert where in reply.content["reason"]
    assert client.ping()["state"] == "ready"
    assert client.stats()["models"]["asr"]["loaded"]  # the malformed unload dropped nothing


@pytest.mark.parametrize(
    "header",
    [
        {"version": 1, "msg_type": 5, "msg_id": "a"},
        {"version": 1, "msg_type": "ping", "msg_id": ["a"]},
        {"version": "1", "msg_type": "ping", "msg_id": "a"},
        {"version": True, "msg_type": "ping", "msg_id": "a"},
        {"version": 1, "msg_type": "ping", "msg_id": "a", "sent_unix": "now"},
        {"version": 1, "msg_type": "p" * 65, "msg_id": "a"},
    ],
)
def test_header_fields_of_the_wrong_type_get_protocol_errors(daemon, header):
    import msgpack

    proc, client, log = daemon
    reply = exchange(client.endpoint, msgpack.packb({"header": header, "content": {}}))
    assert reply.msg_type == protocol.ERROR and reply.content["scope"] == "protocol"
    assert client.ping()["state"] == "ready"


def test_multi_frame_message_and_oversized_frame_do_not_stop_the_daemon(daemon):
    proc, client, log = daemon
    reply = exchange(client.endpoint, [protocol.pack(Message("ping")), b"second frame"])
    assert reply.content["scope"] == "protocol" and "one frame" in reply.content["reason"]
    before = rss_bytes(proc.pid)
    from security_helpers import dealer

    sock = dealer(client.endpoint)
    try:
        sock.send(b"\x00" * (200 << 20))  # 200 MB > daemon.max_message_bytes (16 MiB)
        assert not sock.poll(2000), "an oversized frame must be dropped, not answered"
    finally:
        sock.close()
    assert client.ping()["state"] == "ready"
    assert rss_bytes(proc.pid) - before < 50 << 20, "the oversized frame was buffered"


def test_duplicate_msg_id_in_flight_is_refused_and_the_first_completes(daemon, layout):
    proc, client, log = daemon
    from security_helpers import dealer

    first = Message("transcribe", {"audio_path": str(layout["case"] / "call-02.mp3")})
    sock = dealer(client.endpoint)
    try:
        sock.send(protocol.pack(first))
        assert sock.poll(5000)
        assert protocol.unpack(sock.recv()).content.get("state") == "accepted"
        reply = exchange(
            client.endpoint, protocol.pack(Message("transcribe", {"audio_path": "/x.wav"}, msg_id=first.msg_id))
        )
        assert reply.content["scope"] == "protocol" and "already in flight" in reply.content["reason"]
        while True:
            assert sock.poll(60000), "the first request never finished"
            answer = protocol.unpack(sock.recv())
            if answer.msg_type != protocol.HEARTBEAT:
                break
        assert answer.msg_type == protocol.REPLY and "police" in _words(answer.content)
    finally:
        sock.close()


# ---------------------------------------------------------------------------- models
def test_attacker_model_directory_is_refused_and_none_of_its_code_runs(daemon, layout):
    proc, client, log = daemon
    base = layout["base"]
    markers = base / "markers"
    evil = evil_speechbrain_dir(base / "evil", markers)
    (layout["models"] / "escape").symlink_to(evil)  # inside the root by name, outside by real path
    loads = {k: m["loads"] + m["load_failures"] for k, m in client.stats()["models"].items()}
    clip = str(layout["case"] / "call-01.wav")
    attempts = [
        ("ser", {"ser_categorical": {"id": str(evil)}}),
        ("ser", {"ser_dimensional": {"id": str(evil)}}),
        ("transcribe", {"asr": {"id": str(evil)}}),
        ("transcribe", {"asr": {"id": str(layout["models"] / "escape")}}),
        ("transcribe", {"asr": {"id": str(layout["models"] / ".." / "evil")}}),
        ("transcribe", {"asr": {"id": "openai/whisper-large-v3"}}),  # a hub id: nothing is fetched
        ("transcribe", {"asr": {"id": "models/../../evil"}}),
    ]
    for msg_type, models in attempts:
        err = _refusal(
            client,
            msg_type,
            audio_path=clip,
            models=models,
            **({"segments": [{"start": 0, "end": 1}]} if msg_type == "ser" else {}),
        )
        assert err.scope == "daemon" and "model roots" in err.reason and "nothing was loaded" in err.reason
    assert not list(markers.iterdir()), "code from the attacker's model directory ran"
    stats = client.stats()
    assert {k: m["loads"] + m["load_failures"] for k, m in stats["models"].items()} == loads
    assert stats["state"] == "ready" and client.ping()["load_errors"] == {}


def test_attacker_directory_would_run_its_code_if_loaded(layout, tmp_path):
    """The fixture is live: loaded with the real SpeechBrain loader (outside the daemon), both
    the yaml's !apply and the custom interface run -- which is why the daemon refuses it."""
    markers = tmp_path / "markers"
    evil = evil_speechbrain_dir(tmp_path / "evil", markers)
    code = (
        "from voiceman_daemon.registry import ModelSpec\n"
        "from voiceman_daemon.ser_backend import load_ser_categorical\n"
        f"load_ser_categorical(ModelSpec('ser_categorical', {str(evil)!r}, options=(('device', 'cpu'),)))\n"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert {p.name for p in markers.iterdir()} == {"yaml-ran", "interface-ran"}


def test_model_inside_roots_loads_and_a_failed_load_keeps_the_held_model(daemon, layout, tiny_model):
    proc, client, log = daemon
    clip = str(layout["case"] / "call-01.wav")
    before = client.stats()["models"]["asr"]
    err = _refusal(client, audio_path=clip, models={"asr": {"id": str(layout["models"] / "broken")}})
    assert err.scope == "daemon" and "failed to load" in err.reason
    after = client.stats()
    asr = after["models"]["asr"]
    assert asr["loaded"] and asr["loads"] == before["loads"] and asr["unloads"] == before["unloads"]
    assert asr["custody"]["path"] == str(tiny_model)  # the held model was not dropped
    assert after["state"] == "ready" and after["load_errors"] == {}  # not "degraded"
    ok = client.call("transcribe", deadline_s=120, audio_path=clip)  # served by the held model, no reload
    assert "tomorrow" in _words(ok) and client.stats()["models"]["asr"]["loads"] == before["loads"]
    copy = client.call(
        "transcribe",
        deadline_s=120,
        audio_path=clip,
        models={"asr": {"id": str(layout["models"] / "tiny-copy"), "revision": "copy"}},
    )
    assert copy["model"]["path"] == str(layout["models"] / "tiny-copy") and "tomorrow" in _words(copy)
    assert client.stats()["models"]["asr"]["loads"] == before["loads"] + 1


def test_pinned_model_directory_that_changed_is_refused_before_its_code_runs(tmp_path, tiny_model, speech_case):
    """A configured SER directory pinned when it was clean, then swapped for the attacker's:
    the daemon refuses it at start (load error naming the pin) and no code from it runs."""
    from ser_fixtures import build_speechbrain_iemocap_model

    model = build_speechbrain_iemocap_model(tmp_path / "iemocap")
    pin = sha256_tree(model)
    markers = tmp_path / "markers"
    shutil.rmtree(model)
    evil_speechbrain_dir(model, markers)  # same path, other files
    assert sha256_tree(model) != pin
    with running_daemon(
        tiny_model,
        [speech_case],
        [],
        expect_state="degraded",
        models={"ser_categorical": {"id": str(model), "sha256": pin}},
    ) as (proc, client, log):
        errors = client.ping()["load_errors"]
        assert set(errors) == {"ser_categorical"} and "pin" in errors["ser_categorical"]
        assert not list(markers.iterdir()), "code from the swapped directory ran"
        result = client.call("transcribe", deadline_s=120, audio_path=str(speech_case / "call-01.wav"))
        assert "tomorrow" in _words(result)  # the rest of the daemon serves


def test_pin_check_in_the_registry_keeps_the_held_model(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text('{"a": 1}')
    (model / "weights.bin").write_bytes(b"w" * 100)
    loaded = []

    class Fake:
        def __init__(self, spec):
            self.spec = spec
            loaded.append(spec.revision)

        def custody(self):
            return {"id": self.spec.id}

    pin = sha256_tree(model)
    registry = ModelRegistry({"asr": Fake})
    registry.get(ModelSpec("asr", str(model), "r1", (("sha256", pin),)))
    (model / "config.json").write_text('{"a": 2}')  # not a weight file: still covered by the pin
    with pytest.raises(ModelLoadError, match="pin"):
        registry.get(ModelSpec("asr", str(model), "r2", (("sha256", pin),)))
    assert loaded == ["r1"] and registry.is_loaded("asr")
    assert registry.stats()["asr"]["loaded"] and registry.stats()["asr"]["load_failures"] == 1


def test_pin_is_the_documented_shell_pipeline(tmp_path):
    root = tmp_path / "m"
    (root / "sub" / ".hidden").mkdir(parents=True)
    (root / "config.json").write_text("{}")
    (root / "sub" / "model.ckpt").write_bytes(os.urandom(1000))
    (root / "sub" / ".hidden" / "x.py").write_text("print(1)")
    (root / "Ünïcode name.txt").write_text("ü")
    shell = subprocess.run(
        ["bash", "-c", "find -L . -type f -printf '%P\\0' | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]
    assert sha256_tree(root) == shell


def test_model_trust_decisions(tmp_path):
    root = tmp_path / "models"
    (root / "a").mkdir(parents=True)
    configured = ModelSpec("asr", "/opt/configured", None, (("device", "cpu"), ("sha256", "f" * 64)))
    trust = ModelTrust([root])
    same = trust.spec_for("asr", "/opt/configured", "r2", configured)
    assert same.id == "/opt/configured" and same.revision == "r2" and same.option("sha256") == "f" * 64
    inside = trust.spec_for("asr", str(root / "a"), None, configured)
    assert inside.id == str(root / "a") and inside.option("device") == "cpu" and inside.option("sha256") is None
    for refused in (str(root / "missing"), "a", str(root / "a" / ".." / ".." / "x"), "tiny.en", "/opt/other"):
        with pytest.raises(ModelRefused, match="model roots"):
            trust.spec_for("asr", refused, None, configured)
    with pytest.raises(ModelRefused, match="model roots"):
        ModelTrust().spec_for("asr", str(root / "a"), None, configured)  # default: no roots at all


# ---------------------------------------------------------------------------- confined paths
class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        _Recorder.hits.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def http_server():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def test_confined_paths_every_row_is_refused_naming_only_its_own_file(daemon, layout, http_server):
    proc, client, log = daemon
    case, outside, base = layout["case"], layout["outside"], layout["base"]
    port = http_server.server_address[1]
    (case / "link-out.wav").symlink_to(outside / "secret.m4a")
    (case / "dir.wav").mkdir()
    rows = {
        "url": (f"http://127.0.0.1:{port}/x.wav", "must be an absolute path"),
        "concat": (f"concat:{case}/call-01.wav|{outside}/secret.m4a", "must be an absolute path"),
        "subfile": (f"subfile,,start,0,end,0,,:{outside}/secret.m4a", "must be an absolute path"),
        "file-url": (f"file:{outside}/secret.m4a", "must be an absolute path"),
        "relative": ("call-01.wav", "must be an absolute path"),
        "traversal": (f"{case}/../outside/secret.m4a", "not inside the daemon's case roots"),
        "deep traversal": (f"{case}/../../../../../../etc/passwd", "not inside the daemon's case roots"),
        "symlink out": (str(case / "link-out.wav"), "not inside the daemon's case roots"),
        "outside": (str(outside / "secret.m4a"), "not inside the daemon's case roots"),
        "directory": (str(case / "dir.wav"), "not a regular file (a directory)"),
        "url-like inside": (f"{case}/http:/127.0.0.1:{port}/y.wav", "cannot read: No such file"),
        "missing inside": (str(case / "missing.wav"), "cannot read: No such file"),
    }
    for row, (path, expected) in rows.items():
        err = _refusal(client, audio_path=path)
        name = os.path.basename(path.rstrip("/"))
        assert err.scope == "request" and expected in err.reason, (row, err.reason)
        assert err.reason.startswith(name + ":"), (row, err.reason)
        for secret in (str(base), str(outside), "secret.m4a" if "secret" not in name else "/"):
            assert secret not in err.reason, (row, err.reason)
        assert "Errno" not in err.reason
    assert _Recorder.hits == [], "FFmpeg fetched a URL"
    # Existence of a path outside the roots is not revealed: same answer for both.
    there = _refusal(client, audio_path=str(outside / "secret.m4a")).reason
    absent = _refusal(client, audio_path=str(outside / "absent.m4a")).reason
    assert there.replace("secret.m4a", "X") == absent.replace("absent.m4a", "X")
    # A symlink that stays inside the roots is followed.
    (case / "link-in.wav").symlink_to(case / "call-01.wav")
    assert "tomorrow" in _words(client.call("transcribe", deadline_s=120, audio_path=str(case / "link-in.wav")))


def test_devices_are_refused_without_being_opened(daemon, layout):
    proc, client, log = daemon
    device = layout["case"] / "zero.wav"
    try:
        os.mknod(device, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD")
    err = _refusal(client, audio_path=str(device))
    assert err.scope == "request" and err.reason == "zero.wav: not a regular file (a character device)"


def test_two_fifos_do_not_stall_other_requests(daemon, layout):
    proc, client, log = daemon
    fifos = [layout["case"] / f"fifo-{i}.wav" for i in range(2)]
    for fifo in fifos:
        os.mkfifo(fifo)
    started = time.monotonic()

    def call(path):
        try:
            return client.call("transcribe", deadline_s=60, audio_path=str(path))
        except RequestFailed as exc:
            return exc

    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(call, f) for f in fifos] + [pool.submit(call, layout["case"] / "call-02.mp3")]
        refused = [f.result(timeout=60) for f in futures[:2]]
        refused_after = time.monotonic() - started
        ok = futures[2].result(timeout=120)
    for err, fifo in zip(refused, fifos):
        assert isinstance(err, RequestFailed) and err.reason == f"{fifo.name}: not a regular file (a FIFO)"
    assert refused_after < 5, "a FIFO was opened for reading"
    assert "police" in _words(ok)


# ---------------------------------------------------------------------------- custody
def test_daemon_hashes_what_it_decodes_and_refuses_other_bytes(daemon, layout):
    proc, client, log = daemon
    clip = layout["case"] / "call-01.wav"
    digest = sha256_file(clip)
    ok = client.call("transcribe", deadline_s=120, audio_path=str(clip), sha256=digest)
    assert ok["decoded_sha256"] == digest
    err = _refusal(client, audio_path=str(clip), sha256="0" * 64)
    assert err.scope == "request"
    assert err.reason.startswith("call-01.wav:") and digest in err.reason and "0" * 64 in err.reason


def test_stages_send_the_ingest_hash_and_a_changed_file_fails(daemon, layout, tiny_model):
    from conftest import daemon_overrides
    from voiceman.config import load_config
    from voiceman.pipeline.ingest import ingest
    from voiceman.pipeline.transcribe import asr_request, transcribe

    proc, client, log = daemon
    evidence = layout["case"] / "changing.wav"
    shutil.copy(layout["case"] / "call-01.wav", evidence)
    config = load_config(None, daemon_overrides(tiny_model))
    meta = ingest(evidence)
    record = transcribe(client, meta, asr_request(config), 120)
    assert record["status"] == "ok" and record["sha256"] == meta["sha256"] == record["decoded_sha256"]
    shutil.copy(layout["case"] / "call-02.mp3", evidence)  # swapped after ingest
    record = transcribe(client, meta, asr_request(config), 120)
    assert record["status"] == "failed" and record["failed_stage"] == "transcribe"
    assert meta["sha256"] in record["reason"] and sha256_file(evidence) in record["reason"]


def test_ser_stage_sends_the_transcript_hash(tmp_path, tiny_model):
    from conftest import daemon_overrides
    from voiceman.config import load_config
    from voiceman.pipeline.ser import emotion

    (tmp_path / "dim").mkdir()
    overrides = daemon_overrides(tiny_model)
    overrides["models"]["ser_dimensional"] = {"id": str(tmp_path / "dim")}
    config = load_config(None, overrides)
    sent = {}

    class Client:
        def call(self, msg_type, deadline_s, **content):
            sent.update(content, msg_type=msg_type)
            return {
                "models": [{"kind": "ser_dimensional", "device": "cpu"}],
                "segments": [{"dimensional": {"arousal": 0.5}, "categorical": None, "errors": []}],
            }

    transcript = {
        "file": "a.wav",
        "status": "ok",
        "audio_path": "/c/a.wav",
        "sha256": "ab" * 32,
        "segments": [{"start": 0.0, "end": 1.0}],
    }
    emotion(Client(), transcript, config, 10)
    assert sent["msg_type"] == "ser" and sent["sha256"] == "ab" * 32


# ---------------------------------------------------------------------------- in-process core
class LightASR:
    def __init__(self, spec):
        self.spec = spec

    def custody(self):
        return {"kind": "asr", "id": self.spec.id, "device": "cpu"}

    def transcribe(self, audio, options):
        return {"language": "en", "segments": [], "samples": int(audio.size)}


class LightSER:
    def __init__(self, spec):
        self.spec = spec

    def custody(self):
        return {"kind": self.spec.kind, "id": self.spec.id, "device": "cpu"}

    def predict(self, waveforms, batch_size=None):
        return [{"arousal": float(np.abs(w).mean()) if w.size else 0.0} for w in waveforms]


def _light_core(case: Path, decoder=decode_fd, timeout_s: float = 5.0) -> tuple[DaemonCore, Evidence]:
    evidence = Evidence(CaseRoots([case]), timeout_s, decoder=decoder)
    registry = ModelRegistry({"asr": LightASR, "ser_dimensional": LightSER})
    specs = {"asr": ModelSpec("asr", "light-asr"), "ser_dimensional": ModelSpec("ser_dimensional", "light-ser")}
    return DaemonCore(registry, specs, handlers=build_handlers(evidence)).start(), evidence


def test_decode_stuck_inside_the_decoder_fails_alone_and_others_progress(tmp_path):
    clips = [
        encode(
            (np.random.default_rng(i).standard_normal(SR) * 0.1).astype(np.float32), tmp_path / f"{name}-{i}.wav", "wav"
        )
        for i, name in enumerate(["stuck", "stuck", "ok", "ok", "ok"])
    ]
    release = threading.Event()

    def decoder(fd, name, sample_rate, timeout_s):
        if name.startswith("stuck"):
            release.wait(60)  # ignores its deadline, as a decode stuck inside FFmpeg would
        return decode_fd(fd, name, sample_rate, timeout_s)

    core, evidence = _light_core(tmp_path, decoder, timeout_s=0.5)
    try:
        started = time.monotonic()
        futures = [core.submit("transcribe", {"audio_path": str(c)}) for c in clips]
        outcomes = [f.result(timeout=30) for f in futures]
        elapsed = time.monotonic() - started
        assert [o.ok for o in outcomes] == [False, False, True, True, True]
        assert all(
            "decoding took longer than 0.5 s" in o.content["reason"] and o.scope == "request" for o in outcomes[:2]
        )
        assert elapsed < 10 and evidence.stuck_decodes == 2
        release.set()
        deadline = time.monotonic() + 10
        while evidence.stuck_decodes and time.monotonic() < deadline:
            time.sleep(0.05)
        assert evidence.stuck_decodes == 0
        assert core.submit("transcribe", {"audio_path": str(clips[2])}).result(timeout=10).ok
    finally:
        release.set()
        core.close()


def test_slow_decode_stops_at_its_time_limit(tmp_path):
    long_clip = encode(
        (np.random.default_rng(0).standard_normal(SR * 300) * 0.1).astype(np.float32), tmp_path / "long.m4a", "m4a"
    )
    core, evidence = _light_core(tmp_path, timeout_s=0.05)
    try:
        started = time.monotonic()
        outcome = core.submit("transcribe", {"audio_path": str(long_clip)}).result(timeout=30)
        assert not outcome.ok and outcome.content["reason"].startswith("long.m4a: decoding took longer than 0.05 s")
        assert time.monotonic() - started < 3 and evidence.stuck_decodes == 0
    finally:
        core.close()


def test_ser_request_carries_the_decoded_hash_and_refuses_a_mismatch(tmp_path):
    clip = encode(
        (np.random.default_rng(1).standard_normal(SR * 2) * 0.1).astype(np.float32), tmp_path / "s.wav", "wav"
    )
    core, _ = _light_core(tmp_path)
    try:
        segments = [{"start": 0.0, "end": 1.0}, {"start": 1.0, "end": 2.0}]
        ok = core.submit("ser", {"audio_path": str(clip), "segments": segments, "sha256": sha256_file(clip)}).result(
            timeout=30
        )
        assert ok.ok and ok.content["decoded_sha256"] == sha256_file(clip) and len(ok.content["segments"]) == 2
        bad = core.submit("ser", {"audio_path": str(clip), "segments": segments, "sha256": "1" * 64}).result(timeout=30)
        assert not bad.ok and bad.scope == "request" and "s.wav" in bad.content["reason"]
        assert "1" * 64 in bad.content["reason"] and sha256_file(clip) in bad.content["reason"]
    finally:
        core.close()


def test_schemas_normalise_what_the_core_sees():
    req = TranscribeRequest.parse(
        {"audio_path": "/c/a.wav", "options": {"language": "ko", "batch_size": 4}, "models": {"asr": {"id": "/m/x"}}}
    )
    assert req.content() == {
        "audio_path": "/c/a.wav",
        "sha256": None,
        "models": {"asr": {"id": "/m/x", "revision": None}},
        "options": {"language": "ko", "batch_size": 4},
    }
    ser = SerRequest.parse({"audio_path": "/c/a.wav", "segments": [{"start": 0, "end": 1}]})
    assert ser.content()["segments"] == [{"start": 0.0, "end": 1.0}] and ser.content()["options"] == {}
    with pytest.raises(RequestInvalid):
        TranscribeRequest.parse({"audio_path": "/c/a.wav", "models": {"asr": {"id": "/m", "revision": 5}}})


def test_roots_from_config_default_to_the_case_and_the_repo_models(tmp_path, monkeypatch):
    from voiceman.config import load_config
    from voiceman.resources import REPO_ROOT
    from voiceman_daemon.confinement import case_roots_from_config, model_roots_from_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "cases" / "2026-017").mkdir(parents=True)
    config = load_config(None, {"case_dir": "cases/2026-017"})
    assert config["daemon"]["case_roots"] is None  # the schema's default: the case_dir
    assert case_roots_from_config(config).roots == (tmp_path.resolve() / "cases" / "2026-017",)
    assert model_roots_from_config(config) == (Path(os.path.realpath(REPO_ROOT / "models")),)
    config = load_config(None, {"daemon": {"case_roots": ["/srv/a", "b"], "model_roots": []}})
    assert case_roots_from_config(config).roots == (Path("/srv/a"), tmp_path.resolve() / "b")
    assert model_roots_from_config(config) == ()
