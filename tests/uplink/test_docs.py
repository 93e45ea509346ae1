"""The docs against the code: asyncapi.yaml is sound AsyncAPI 3; wire-format.md's examples hold."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml  # type: ignore[import-untyped]
import zstandard

from edgetwin.core.types import TwinBatch
from edgetwin.uplink.codec import (
    Birth,
    PointInfo,
    Status,
    decode_birth,
    encode_birth,
    encode_event,
    encode_status,
    unpack_frame,
)
from edgetwin.uplink.framer import FrameDecoder, FrameEncoder, mark_replay
from edgetwin.uplink.topics import KINDS, Topics

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"
CHANNEL_OF_KIND = {"birth": "birth", "status": "status", "frames": "frames", "events": "events"}
CHANNEL_OF_KIND["rebirth"] = "rebirth"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    loaded = yaml.safe_load(DOC_PATH.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"only local references are used: {ref}"
    node: Any = doc
    for escaped in ref[2:].split("/"):
        part = escaped.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), ref
        assert part in node, f"dangling reference {ref}"
        node = node[part]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def deref(doc: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        node = resolve(doc, node["$ref"])
    return node


def test_required_top_level_keys(doc: dict[str, Any]) -> None:
    assert doc["asyncapi"] == "3.0.0"
    assert isinstance(doc["info"]["title"], str)
    assert isinstance(doc["info"]["version"], str)
    assert set(doc) <= {
        "asyncapi",
        "id",
        "info",
        "servers",
        "defaultContentType",
        "channels",
        "operations",
        "components",
    }
    for server in doc.get("servers", {}).values():
        assert {"host", "protocol"} <= set(server)


def test_every_reference_resolves(doc: dict[str, Any]) -> None:
    found = refs(doc)
    assert len(found) > 20
    for ref in found:
        resolve(doc, ref)


def test_channels_have_addresses_parameters_and_messages(doc: dict[str, Any]) -> None:
    for name, channel in doc["channels"].items():
        address = channel["address"]
        names = set(re.findall(r"{(\w+)}", address))
        assert names == set(channel.get("parameters", {})), name
        assert names == {"prefix", "gateway"}, name
        for param in channel["parameters"].values():
            assert isinstance(deref(doc, param), dict)
        assert channel["messages"], name
        for message in channel["messages"].values():
            assert "payload" in deref(doc, message), name


def test_channel_addresses_are_the_code_topics(doc: dict[str, Any]) -> None:
    topics = Topics("edgetwin/v1", "gw-1")
    assert set(CHANNEL_OF_KIND) == set(KINDS)
    for kind, channel in CHANNEL_OF_KIND.items():
        address = doc["channels"][channel]["address"]
        assert address.format(prefix="edgetwin/v1", gateway="gw-1") == topics.topic(kind)  # type: ignore[arg-type]


def test_operations_use_their_channels_messages(doc: dict[str, Any]) -> None:
    actions: dict[str, str] = {}
    for name, op in doc["operations"].items():
        assert op["action"] in ("send", "receive"), name
        channel_ref = op["channel"]["$ref"]
        assert channel_ref.startswith("#/channels/")
        resolve(doc, channel_ref)
        for message in op["messages"]:
            assert message["$ref"].startswith(channel_ref + "/messages/"), name
            resolve(doc, message["$ref"])
        actions[channel_ref.rsplit("/", 1)[1]] = op["action"]
    assert actions == {
        "birth": "send",
        "status": "send",
        "frames": "send",
        "events": "send",
        "rebirth": "receive",
    }
    retained = {
        op["channel"]["$ref"].rsplit("/", 1)[1]: op["bindings"]["mqtt"].get("retain", False)
        for op in doc["operations"].values()
    }
    assert retained == {
        "birth": True,
        "status": True,
        "frames": False,
        "events": False,
        "rebirth": False,
    }


def test_frames_are_binary_with_a_pointer_to_the_prose(doc: dict[str, Any]) -> None:
    frame = deref(doc, doc["channels"]["frames"]["messages"]["frame"])
    assert frame["payload"]["type"] == "string"
    assert frame["payload"]["format"] == "binary"
    url = frame["externalDocs"]["url"]
    page, _, anchor = url.partition("#")
    prose = (DOC_PATH.parent / page).read_text(encoding="utf-8")
    headings = {
        re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", prose, flags=re.M)
    }
    assert anchor in headings


# ---------------------------------------------------------------- payload schemas


def check(doc: dict[str, Any], schema: Any, value: Any, path: str = "$") -> None:
    """A small JSON Schema subset: enough for the schemas the document uses."""
    schema = deref(doc, schema)
    kinds = schema.get("type")
    if kinds is not None:
        kinds = kinds if isinstance(kinds, list) else [kinds]
        ok = {
            "object": isinstance(value, dict),
            "array": isinstance(value, list),
            "string": isinstance(value, str),
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, int | float) and not isinstance(value, bool),
            "null": value is None,
        }
        assert any(ok[k] for k in kinds), f"{path}: {value!r} is not {kinds}"
    if "const" in schema:
        assert value == schema["const"], path
    if "enum" in schema:
        assert value in schema["enum"], path
    if isinstance(value, int | float) and not isinstance(value, bool):
        assert value >= schema.get("minimum", value), path
        assert value <= schema.get("maximum", value), path
        if "exclusiveMinimum" in schema:
            assert value > schema["exclusiveMinimum"], path
    if isinstance(value, str):
        assert len(value) >= schema.get("minLength", 0), path
        if "pattern" in schema:
            assert re.search(schema["pattern"], value), path
    if isinstance(value, dict):
        for key in schema.get("required", []):
            assert key in value, f"{path}: {key!r} is required"
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                check(doc, sub, value[key], f"{path}.{key}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in value.keys() - schema.get("properties", {}).keys():
                check(doc, extra, value[key], f"{path}.{key}")
    if "oneOf" in schema:
        passed = 0
        for branch in schema["oneOf"]:
            try:
                check(doc, branch, value, path)
            except AssertionError:
                continue
            passed += 1
        assert passed == 1, f"{path}: {passed} of the oneOf branches match"
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            check(doc, schema["items"], item, f"{path}[{i}]")


def payload_schema(doc: dict[str, Any], channel: str, message: str) -> Any:
    return deref(doc, doc["channels"][channel]["messages"][message])["payload"]


BIRTH = Birth(
    "pump-gw",
    "7f3c9a",
    "0.1.0",
    1_700_000_000.0,
    (
        PointInfo(0, "pump", "speed", "rpm", "float32", "level", 10.83, 1.0, 2.0, "model", 60.0),
        PointInfo(1, "pump", "run_seconds", "s", "uint32", "none", 10.83),
    ),
)


def test_real_payloads_match_the_schemas(doc: dict[str, Any]) -> None:
    birth = json.loads(encode_birth(BIRTH))
    check(doc, payload_schema(doc, "birth", "birth"), birth)
    point_schema = deref(doc, payload_schema(doc, "birth", "birth"))["properties"]["points"]
    declared = deref(doc, point_schema["items"])
    assert set(birth["points"][0]) == set(declared["properties"]) == set(declared["required"])
    assert set(birth) == set(deref(doc, payload_schema(doc, "birth", "birth"))["properties"])
    for state in ("online", "offline"):
        status = json.loads(encode_status(Status(state, "7f3c9a", 1.0)))
        check(doc, payload_schema(doc, "status", "status"), status)
    common = {"gateway": "pump-gw", "session": "7f3c9a", "ts": 2.0}
    alarm = {**common, "type": "alarm", "device": "pump", "point": "flow", "alarm": 2}
    alarm |= {"previous": 0, "index": 1, "score": 1.7, "value": None, "estimate": 3.0}
    check(doc, payload_schema(doc, "events", "alarm"), json.loads(encode_event(alarm)))
    asset = {**common, "type": "alarm", "device": "pump", "asset": "hydraulics", "alarm": 2}
    asset |= {"severity": "major", "contributions": {"flow": 0.75, "head": 0.25}, "score": 2.4}
    check(doc, payload_schema(doc, "events", "alarm"), json.loads(encode_event(asset)))
    device = {**common, "type": "device", "device": "pump", "state": "offline", "detail": "x"}
    check(doc, payload_schema(doc, "events", "device"), json.loads(encode_event(device)))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("points", 0, "resolution"), 0),
        (("points", 0, "report"), "sometimes"),
        (("points", 1, "heartbeat"), "never"),
        (("points", 0, "index"), -1),
        (("v",), 2),
        (("session",), ""),
    ],
)
def test_the_schemas_reject_what_the_decoder_rejects(
    doc: dict[str, Any], path: tuple[Any, ...], value: Any
) -> None:
    birth = json.loads(encode_birth(BIRTH))
    target = birth
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    with pytest.raises(AssertionError):
        check(doc, payload_schema(doc, "birth", "birth"), birth)


# ---------------------------------------------------------------- wire-format.md


def prose_block(after_heading: str, lang: str = "") -> str:
    text = (DOC_PATH.parent / "wire-format.md").read_text(encoding="utf-8")
    section = text.split(after_heading, 1)[1]
    return section.split(f"```{lang}\n", 1)[1].split("```", 1)[0]


def test_birth_example_is_what_the_encoder_writes() -> None:
    example = prose_block("## Birth (JSON)", "json").strip().encode()
    assert encode_birth(decode_birth(example)) == example


def test_worked_example_bytes_decode_as_described() -> None:
    hexed = []
    for line in prose_block("### Worked example").splitlines():
        for token in line.split():
            if not re.fullmatch(r"[0-9a-f]{2}", token):
                break
            hexed.append(token)
    payload = bytes.fromhex("".join(hexed))
    assert len(payload) == 140
    pts = decode_birth(prose_block("## Birth (JSON)", "json").strip().encode()).points
    enc = FrameEncoder("pump-gw", "7f3c9a", pts, seq=39)
    empty = np.zeros(0)
    _, frame39 = enc.snapshot(
        TwinBatch(
            np.zeros(0, np.int64),
            empty,
            empty,
            empty,
            empty,
            np.zeros(0, np.uint8),
            np.zeros(0, np.uint16),
        )
    )
    ts = np.full(3, 1_700_000_000.0)
    _, frame40 = enc.encode(
        TwinBatch(
            np.array([0, 1, 2]),
            ts,
            np.array([2901.0, 60.23, 7199.0]),
            np.array([2900.9, 60.21, 7199.0]),
            np.zeros(3),
            np.zeros(3, np.uint8),
            np.zeros(3, np.uint16),
        )
    )
    rows = TwinBatch(
        index=np.array([0, 1, 2, 0]),
        ts=np.array([0.25, 0.25, 0.25, 0.5]) + 1_700_000_000,
        value=np.array([2901.5, np.nan, 7200.0, 2903.0]),
        estimate=np.array([2900.8, 60.2, 7200.0, 2901.2]),
        score=np.array([0.12, 0.0, 0.0, 0.56]),
        alarm=np.array([0, 0, 0, 1], np.uint8),
        quality=np.array([0, 1, 0, 0], np.uint16),
    )
    seq, frame41 = enc.encode(rows)
    assert seq == 41
    plain = zstandard.ZstdDecompressor()
    assert plain.decompress(payload[4:]) == plain.decompress(frame41[4:])
    assert payload[:4] == frame41[:4]
    assert FrameDecoder(pts).decode(unpack_frame(payload)) is None  # it never saw frame 40
    decoder = FrameDecoder(pts)
    for earlier in (frame39, mark_replay(frame40)):  # replayed: the flag changes nothing
        assert decoder.decode(unpack_frame(earlier)) is not None
    out = decoder.decode(unpack_frame(payload))
    assert out is not None
    assert out.value[[0, 2, 3]].tolist() == [2901.5, 7200.0, 2903.0]
    assert np.isnan(out.value[1])
    assert out.estimate.tolist() == [2901.0, 60.2, 7200.0, 2901.0]
    assert out.score.tolist() == [0.125, 0.0, 0.0, 0.5625]
    assert out.alarm.tolist() == [0, 0, 0, 1]
    assert out.ts.tolist() == [1_700_000_000.25] * 3 + [1_700_000_000.5]


def test_python_example_runs() -> None:
    code = prose_block("## Decoding in Python", "python")
    namespace: dict[str, Any] = {}
    exec(compile(code, "wire-format.md", "exec"), namespace)
    pts = decode_birth(prose_block("## Birth (JSON)", "json").strip().encode()).points
    enc = FrameEncoder("pump-gw", "7f3c9a", pts)
    namespace["on_message"](
        "edgetwin/v1/pump-gw/birth", prose_block("## Birth (JSON)", "json").strip().encode()
    )
    batch = TwinBatch(
        np.array([1]),
        np.array([1.0]),
        np.array([60.2]),
        np.array([60.2]),
        np.zeros(1),
        np.zeros(1, np.uint8),
        np.zeros(1, np.uint16),
    )
    namespace["on_message"]("edgetwin/v1/pump-gw/frames", enc.encode(batch)[1])
    decoder = namespace["decoders"]["pump-gw", "7f3c9a"]
    assert decoder.next_seq == 1
