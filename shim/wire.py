"""Protocol Buffers' wire format read by hand, for the few places that must not import
protobuf: the descriptor set's split (0.6 MB of descriptor_pb2 otherwise) and containerd's
runtime options on ``start``'s stdin (every container's ``start`` would pay ~35 ms)."""


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
