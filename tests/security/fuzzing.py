"""Generators of hostile input for the fuzz test: hypothesis strategies built from the
protobuf descriptors (any message type, every field), byte-level mutations of valid
messages, and raw random bytes."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)


def strings(interesting: Sequence[str]) -> st.SearchStrategy[str]:
    """Short random text, and now and then a value the server may recognize (a real
    build id, an agent id) or one that tests its bounds."""
    specials = [
        "",
        " ",
        "\0",
        "x" * 5000,
        "b" + "0" * 20,
        "b" + "f" * 20,
        "../../etc/passwd",
        "'; DROP TABLE builds; --",
        "\ud7ff\ue000\U0010ffff",
        "*",
        *interesting,
    ]
    return st.one_of(st.text(max_size=40), st.sampled_from(specials))


def _scalar(field: FieldDescriptor, text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return text
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=40)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    if kind == FieldDescriptor.TYPE_ENUM:
        # Proto3 enums are open: numbers the enum does not name arrive as they are.
        known = [value.number for value in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(*INT32))
    if kind in (
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_SFIXED64,
    ):
        return st.integers(*INT64)
    if kind in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return st.integers(*UINT64)
    if kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return st.integers(*UINT32)
    return st.integers(*INT32)


def _repeated(field: FieldDescriptor) -> bool:
    # protobuf 7 dropped `label`; older runtimes (>= 5.27 is allowed) may lack is_repeated.
    if hasattr(field, "is_repeated"):
        return bool(field.is_repeated)
    return bool(field.label == FieldDescriptor.LABEL_REPEATED)


def messages(
    descriptor: Descriptor,
    interesting: Sequence[str] = (),
    forced: dict[str, Any] | None = None,
    depth: int = 0,
) -> st.SearchStrategy[Message]:
    """Messages of `descriptor` with any subset of fields set to random values;
    `forced` fields (top level only) are set as given, e.g. a Hello's agent id."""
    text = strings(interesting)
    cls = message_factory.GetMessageClass(descriptor)
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field, value_field = field.message_type.fields
            optional[field.name] = st.dictionaries(
                _scalar(key_field, text), _scalar(value_field, text), max_size=4
            )
        elif field.message_type is not None:
            if depth >= 4:
                continue
            inner = messages(field.message_type, interesting, None, depth + 1)
            optional[field.name] = st.lists(inner, max_size=3) if _repeated(field) else inner
        elif _repeated(field):
            optional[field.name] = st.lists(_scalar(field, text), max_size=4)
        else:
            optional[field.name] = _scalar(field, text)

    def build(values: dict[str, Any]) -> Message:
        message = cls()
        for name, value in {**values, **(forced or {})}.items():
            target = getattr(message, name)
            if isinstance(value, dict):
                target.update(value)
            elif isinstance(value, list):
                if value and isinstance(value[0], Message):
                    for item in value:
                        target.add().CopyFrom(item)
                else:
                    target.extend(value)
            elif isinstance(value, Message):
                target.CopyFrom(value)
            else:
                setattr(message, name, value)
        return message

    return st.fixed_dictionaries({}, optional=optional).map(build)  # type: ignore[arg-type]


def generate(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    """Up to `count` examples of `strategy`, the same on every run (derandomized), so
    a failure found in CI happens again on a laptop. Fewer when the space is small."""
    found: list[Any] = []

    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(example: Any) -> None:
        found.append(example)

    collect()
    return found


# ---- bytes ----------------------------------------------------------------------------


def _flip(data: bytearray, rng: random.Random) -> None:
    if data:
        position = rng.randrange(len(data))
        data[position] ^= 1 << rng.randrange(8)


def _replace(data: bytearray, rng: random.Random) -> None:
    if data:
        data[rng.randrange(len(data))] = rng.choice([0x00, 0x7F, 0x80, 0xFF, rng.randrange(256)])


def _insert(data: bytearray, rng: random.Random) -> None:
    position = rng.randrange(len(data) + 1)
    data[position:position] = rng.randbytes(rng.randrange(1, 16))


def _delete(data: bytearray, rng: random.Random) -> None:
    if data:
        start = rng.randrange(len(data))
        del data[start : start + rng.randrange(1, 16)]


def _truncate(data: bytearray, rng: random.Random) -> None:
    if data:
        del data[rng.randrange(len(data)) :]


def _duplicate(data: bytearray, rng: random.Random) -> None:
    if data:
        start = rng.randrange(len(data))
        chunk = data[start : start + rng.randrange(1, 32)]
        position = rng.randrange(len(data) + 1)
        data[position:position] = chunk * rng.randrange(1, 4)


def _huge_length(data: bytearray, rng: random.Random) -> None:
    # A length-delimited field claiming far more bytes than follow.
    position = rng.randrange(len(data) + 1)
    data[position:position] = bytes([0x0A, 0xFF, 0xFF, 0xFF, 0x0F])


MUTATIONS: list[Callable[[bytearray, random.Random], None]] = [
    _flip,
    _replace,
    _insert,
    _delete,
    _truncate,
    _duplicate,
    _huge_length,
]


def mutate(seed: bytes, rng: random.Random) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randrange(1, 5)):
        rng.choice(MUTATIONS)(data, rng)
    return bytes(data)


def raw_bytes(rng: random.Random) -> bytes:
    return rng.randbytes(rng.choice([0, 1, 2, 5, 17, 64, 300, 2000]))
