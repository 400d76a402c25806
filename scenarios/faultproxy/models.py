"""The Toxiproxy REST shapes: request decoding, validation and response bodies (pure).

Decoding follows Go's ``encoding/json`` as the real server uses it: keys match
case-insensitively, unknown keys are ignored, ``null`` leaves a field at its default, and a
value of the wrong JSON type is an error (``bad request body: ...``, 400). Integers must be
JSON integers (Go refuses ``1.5`` for an ``int64``).

Bodies are parsed by :func:`parse_json`, which refuses what Go's decoder refuses (``NaN``,
``Infinity``) and, unlike Go (which would swap them for U+FFFD), any string holding a lone
UTF-16 surrogate such as ``"\\ud800"``: such a name can be neither encoded in a response nor
addressed in a URL. Names are free text as in Toxiproxy, except ``"."`` and ``".."``, which
URL clients rewrite as path segments, so such a proxy or toxic could never be reached.
``upstream`` is not parsed here: like the real server we only dial it when a client connects.
``listen`` is checked by the engine, where the real server checks it (when it binds).

Extra fields real clients never send: ``seed`` on a proxy or a toxic overrides the server seed
for the randomness of that proxy's or toxic's links (jitter, toxicity draws, slicer sizes). A
toxic's seed may also be given as ``attributes.seed`` (clients such as toxiproxy-python only
pass ``attributes`` through); responses show it as the top-level ``seed``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from scenarios.faultproxy.errors import ApiError
from scenarios.faultproxy.toxics import TOXIC_TYPES, InvalidAttributes, validate_attributes

__all__ = [
    "ProxyInput",
    "ProxyUpdate",
    "ToxicConfig",
    "bad_body",
    "decode_proxy_create",
    "decode_proxy_update",
    "decode_toxic_create",
    "decode_toxic_update",
    "parse_json",
    "populate_items",
]

STREAMS: Final = ("upstream", "downstream")
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_FLOAT32_MAX: Final = 3.4028234663852886e38
#: JSON's whitespace (also Go's): what may precede the body's value.
_JSON_SPACE: Final = " \t\n\r"


def bad_body(detail: str) -> ApiError:
    return ApiError(f"bad request body: {detail}", 400)


def missing_field(what: str) -> ApiError:
    return ApiError(f"missing required field: {what}", 400)


def _refuse_constant(name: str) -> None:
    # Python's json accepts these literals; Go's decoder (and JSON) does not.
    raise ValueError(f"invalid character {name[0]!r}: {name} is not a JSON number")


def _check_text(value: object) -> None:
    """Every string (keys too) must be encodable: no lone surrogate from a ``\\udXXX`` escape."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and not item.isascii():
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                bad = item[exc.start]
                raise bad_body(
                    f"string {item[:40]!r} holds a lone UTF-16 surrogate (\\u{ord(bad):04x}): "
                    "send valid Unicode (a surrogate escape must be one of a pair)"
                ) from None


def parse_json(raw: bytes) -> Any:
    """A request body (or a ``--config`` file) as JSON, checked for what Go would refuse.

    Like Go's ``json.Decoder.Decode`` only the first value counts (trailing text is not read).
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_body(f"invalid UTF-8 at byte {exc.start}") from None
    start = len(text) - len(text.lstrip(_JSON_SPACE))
    if start == len(text):
        raise bad_body("EOF")
    try:
        value, _ = json.JSONDecoder(parse_constant=_refuse_constant).raw_decode(text, start)
    except ValueError as exc:  # JSONDecodeError, or a NaN/Infinity literal
        raise bad_body(str(exc)) from None
    except RecursionError:
        raise bad_body("JSON nested too deeply") from None
    _check_text(value)
    return value


def _check_name(name: str, what: str) -> None:
    if name in (".", ".."):
        raise bad_body(
            f'{what} name "{name}" cannot be used: URL clients rewrite "." and ".." path '
            "segments, so it could never be addressed; choose another name"
        )


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _type_error(value: object, where: str, go_type: str) -> ApiError:
    shown = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    what = f"number {shown}" if shown is not None else _json_type(value)
    return bad_body(f"json: cannot unmarshal {what} into Go struct field {where} of type {go_type}")


def _lookup(obj: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    """Go matches JSON keys to struct fields case-insensitively (exact match preferred)."""
    if key in obj:
        return True, obj[key]
    for k, v in obj.items():
        if k.lower() == key:
            return True, v
    return False, None


def _opt_str(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    found, value = _lookup(obj, key)
    if not found or value is None:
        return None
    if not isinstance(value, str):
        raise _type_error(value, f"{where}.{key}", "string")
    return value


def _opt_bool(obj: Mapping[str, Any], key: str, where: str) -> bool | None:
    found, value = _lookup(obj, key)
    if not found or value is None:
        return None
    if not isinstance(value, bool):
        raise _type_error(value, f"{where}.{key}", "bool")
    return value


def _opt_int(obj: Mapping[str, Any], key: str, where: str, go_type: str = "int64") -> int | None:
    found, value = _lookup(obj, key)
    if not found or value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not _INT64_MIN <= value <= _INT64_MAX
    ):
        raise _type_error(value, f"{where}.{key}", go_type)
    return value


def _opt_float(obj: Mapping[str, Any], key: str, where: str) -> float | None:
    found, value = _lookup(obj, key)
    if not found or value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not abs(value) <= _FLOAT32_MAX  # also refuses inf (Python reads 1e400 as inf)
    ):
        raise _type_error(value, f"{where}.{key}", "float32")
    return float(value)


def _object(body: object, go_type: str) -> Mapping[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise bad_body(f"json: cannot unmarshal {_json_type(body)} into Go value of type {go_type}")
    return body


# --------------------------------------------------------------------------------------------
# Proxies


@dataclass(frozen=True, slots=True)
class ProxyInput:
    name: str
    listen: str
    upstream: str
    enabled: bool
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class ProxyUpdate:
    listen: str | None = None
    upstream: str | None = None
    enabled: bool | None = None
    seed: int | None = None


def _decode_proxy_fields(obj: Mapping[str, Any], where: str) -> ProxyUpdate:
    return ProxyUpdate(
        listen=_opt_str(obj, "listen", where),
        upstream=_opt_str(obj, "upstream", where),
        enabled=_opt_bool(obj, "enabled", where),
        seed=_opt_int(obj, "seed", where),
    )


def decode_proxy_create(body: object, *, default_listen: str, suffix: str = "") -> ProxyInput:
    """Body of ``POST /proxies`` (and one ``/populate`` item, with ``suffix`` " at proxy N")."""
    obj = _object(body, "toxiproxy.Proxy")
    name = _opt_str(obj, "name", "Proxy") or ""
    fields = _decode_proxy_fields(obj, "Proxy")
    if not name:
        raise missing_field("name" + suffix)
    if not fields.upstream:
        raise missing_field("upstream" + suffix)
    _check_name(name, "proxy")
    # Deliberate: an omitted or empty listen is loopback, not every interface (api.py).
    listen = fields.listen or default_listen
    return ProxyInput(
        name=name,
        listen=listen,
        upstream=fields.upstream,
        enabled=True if fields.enabled is None else fields.enabled,
        seed=fields.seed,
    )


def decode_proxy_update(body: object, *, default_listen: str) -> ProxyUpdate:
    """Body of ``PATCH /proxies/{p}``; ``"listen": ""`` means the default, as on creation."""
    obj = _object(body, "toxiproxy.Proxy")
    update = _decode_proxy_fields(obj, "Proxy")
    if update.listen == "":
        return ProxyUpdate(default_listen, update.upstream, update.enabled, update.seed)
    return update


def populate_items(body: object, *, default_listen: str) -> list[ProxyInput]:
    """Validate a whole ``/populate`` array before anything changes (Go's phase 1)."""
    if not isinstance(body, list):
        raise bad_body(
            f"json: cannot unmarshal {_json_type(body)} into Go value of type "
            '[]struct { toxiproxy.Proxy; Enabled *bool "json:\\"enabled\\"" }'
        )
    items: list[ProxyInput] = []
    seen: set[str] = set()
    for i, raw in enumerate(body):
        item = decode_proxy_create(raw, default_listen=default_listen, suffix=f" at proxy {i + 1}")
        if item.name in seen:
            raise ApiError(f'duplicate proxy name "{item.name}"', 400)
        seen.add(item.name)
        items.append(item)
    return items


# --------------------------------------------------------------------------------------------
# Toxics


@dataclass(frozen=True, slots=True)
class ToxicConfig:
    """A toxic as the API holds it (the engine runs one instance of it per live link)."""

    name: str
    type: str
    stream: str
    toxicity: float
    attributes: Mapping[str, int]
    seed: int | None = None

    @property
    def upstream(self) -> bool:
        return self.stream.lower() == "upstream"

    def to_json(self) -> dict[str, Any]:
        # Field order of Go's ToxicWrapper: attributes, name, type, stream, toxicity.
        out: dict[str, Any] = {
            "attributes": dict(self.attributes),
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": int(self.toxicity) if self.toxicity.is_integer() else self.toxicity,
        }
        if self.seed is not None:
            out["seed"] = self.seed
        return out


def _decode_attributes(toxic_type: str, raw: object, base: Mapping[str, int]) -> dict[str, int]:
    struct = _GO_NAMES.get(toxic_type, "NoopToxic")
    merged = dict(base)
    if raw is None:
        return merged
    if not isinstance(raw, dict):
        raise bad_body(
            f"json: cannot unmarshal {_json_type(raw)} into Go struct field "
            f".attributes of type toxics.{struct}"
        )
    for name in TOXIC_TYPES[toxic_type].names:
        go_type = "int" if toxic_type == "slicer" else "int64"
        value = _opt_int(raw, name, f"{struct}.attributes", go_type)
        if value is not None:
            merged[name] = value
    return merged


_GO_NAMES: Final = {
    "latency": "LatencyToxic",
    "bandwidth": "BandwidthToxic",
    "slow_close": "SlowCloseToxic",
    "timeout": "TimeoutToxic",
    "reset_peer": "ResetToxic",
    "slicer": "SlicerToxic",
    "limit_data": "LimitDataToxic",
    "noop": "NoopToxic",
}


def _attribute_seed(raw_attrs: object) -> int | None:
    """``attributes.seed``: the only place a toxiproxy-python user can put a toxic's seed."""
    if not isinstance(raw_attrs, dict):
        return None
    return _opt_int(raw_attrs, "seed", "attributes.seed")


def _validate(toxic_type: str, attrs: Mapping[str, int]) -> None:
    try:
        validate_attributes(toxic_type, attrs)
    except InvalidAttributes as exc:
        raise bad_body(str(exc)) from None


def decode_toxic_create(body: object, existing_names: set[str]) -> ToxicConfig:
    """Body of ``POST /proxies/{p}/toxics``, with the real server's order of checks."""
    obj = _object(body, "toxics.ToxicWrapper")
    name = _opt_str(obj, "name", "ToxicWrapper.name") or ""
    toxic_type = _opt_str(obj, "type", "ToxicWrapper.type") or ""
    stream = _opt_str(obj, "stream", "ToxicWrapper.stream")
    toxicity = _opt_float(obj, "toxicity", "ToxicWrapper.toxicity")
    seed = _opt_int(obj, "seed", "ToxicWrapper.seed")
    stream = "downstream" if stream is None else stream
    if stream.lower() not in STREAMS:
        raise ApiError("stream was invalid, can be either upstream or downstream", 400)
    if not name:
        name = f"{toxic_type}_{stream}"
    if toxic_type not in TOXIC_TYPES:
        raise ApiError("invalid toxic type", 400)
    if name in existing_names:
        raise ApiError("toxic already exists", 409)
    _, raw_attrs = _lookup(obj, "attributes")
    zero = dict.fromkeys(TOXIC_TYPES[toxic_type].names, 0)
    attrs = _decode_attributes(toxic_type, raw_attrs, zero)
    if seed is None:
        seed = _attribute_seed(raw_attrs)
    toxicity = 1.0 if toxicity is None else toxicity
    _check_name(name, "toxic")
    _validate(toxic_type, attrs)
    return ToxicConfig(name, toxic_type, stream, toxicity, attrs, seed)


def decode_toxic_update(body: object, current: ToxicConfig) -> ToxicConfig:
    """Body of ``PATCH /proxies/{p}/toxics/{t}``: attributes merged key by key."""
    obj = _object(body, "struct { Attributes interface {}; Toxicity float32 }")
    _, raw_attrs = _lookup(obj, "attributes")
    attrs = _decode_attributes(current.type, raw_attrs, current.attributes)
    toxicity = _opt_float(obj, "toxicity", "toxicity")
    seed = _opt_int(obj, "seed", "seed")
    if seed is None:
        seed = _attribute_seed(raw_attrs)
    # Any toxicity: below 0 never applies, above 1 always does (Go draws Float32() < it).
    toxicity = current.toxicity if toxicity is None else toxicity
    _validate(current.type, attrs)
    return ToxicConfig(
        current.name,
        current.type,
        current.stream,
        toxicity,
        attrs,
        current.seed if seed is None else seed,
    )
