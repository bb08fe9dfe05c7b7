"""Protocol Buffers' wire format by hand, for the few places that must not import protobuf:
read, the shim's descriptor set's split (0.6 MB of descriptor_pb2 otherwise) and
containerd's runtime options on ``start``'s stdin (every container's ``start`` would pay
~35 ms); written and read, CRIU's RPC (criu.py: a dozen scalar and nested fields, where
protobuf's runtime and a compiled criu rpc.proto would cost more than the exchange)."""


def fields(data):
    """(field number, value) of each field of a serialized message, in order: an int for a
    varint, bytes for a length-delimited field or a fixed32/fixed64 one. ValueError for
    anything else (groups, a truncated message)."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _varint(data, pos)
        elif wire_type == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire_type in (1, 5):
            size = 8 if wire_type == 1 else 4
            value, pos = data[pos:pos + size], pos + size
        else:
            raise ValueError(f"protobuf: wire type {wire_type} (field {number}) at byte {pos}")
        if pos > end:
            raise ValueError(f"protobuf: field {number} runs past the message's {end} bytes")
        yield number, value


def _varint(data, pos):
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError(f"protobuf: a varint runs past the message's {len(data)} bytes")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        shift += 7
        if byte < 0x80:
            return value, pos


def message(pairs):
    """Serialize (field number, value) pairs, in order: a bool or an int is a varint (a
    negative one as its 64-bit two's complement, as protobuf writes an int32), str or bytes
    length-delimited, a list or tuple of pairs a nested message. A None value is left out."""
    out = bytearray()
    for number, value in pairs:
        if value is None:
            continue
        if isinstance(value, int):  # bool too
            out += _encode_varint(number << 3) + _encode_varint(int(value) & 0xFFFFFFFFFFFFFFFF)
            continue
        if isinstance(value, str):
            value = value.encode()
        elif isinstance(value, (list, tuple)):
            value = message(value)
        out += _encode_varint(number << 3 | 2) + _encode_varint(len(value)) + value
    return bytes(out)


def _encode_varint(value):
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
