"""json.loads/json.dumps on the C accelerator ``_json`` alone.

``import json`` pulls in ``re`` (json.decoder and json.encoder compile regexes at
import), about 4 ms on every command; the C scanner and encoder need none of it.
Output and errors match the json module's for the data the runtime handles.
"""

import _json
import sys


class _Context:
    """The attributes _json.make_scanner reads from a JSONDecoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo = {}

    @staticmethod
    def parse_constant(name):
        return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


_scan = _json.make_scanner(_Context())
_WS = " \t\n\r"


def loads(s):
    """Parse a JSON document (str or bytes); raise ValueError with the position on error."""
    if isinstance(s, (bytes, bytearray)):
        s = s.decode()
    s = s.removeprefix("\ufeff")
    idx = len(s) - len(s.lstrip(_WS))
    try:
        obj, end = _scan(s, idx)
    except StopIteration as e:
        raise ValueError(f"expecting a value at {_where(s, e.value)}") from None
    except RecursionError:  # the scanner recurses once per level of [ and {
        raise ValueError("nested too deeply") from None
    except (ValueError, SystemError) as e:
        if "integer string conversion" in str(e):  # int() says "use sys.set_int_max_str_digits()"
            raise ValueError(f"a number longer than {sys.get_int_max_str_digits()} digits") from None
        # The scanner builds its error from json.decoder, which we never imported:
        # let the json module parse the broken document and word the error.
        import json

        return json.loads(s)
    rest = s[end:].lstrip(_WS)
    if rest:
        raise ValueError(f"extra data at {_where(s, len(s) - len(rest))}")
    _Context.memo.clear()
    return obj


def _where(s, pos):
    line = s.count("\n", 0, pos) + 1
    col = pos - s.rfind("\n", 0, pos)
    return f"line {line} column {col} (char {pos})"


_encode = _json.make_encoder(None, None, _json.encode_basestring_ascii, None, ": ", ", ", False, False, True)


def dumps(obj, indent=None):
    """Serialize like json.dumps(obj, indent=indent) for dicts, lists and scalars."""
    if indent is None:
        return "".join(_encode(obj, 0))
    return _pretty(obj, indent, "")


def _pretty(obj, indent, pad):
    inner = pad + indent
    if isinstance(obj, dict) and obj:
        items = (f"{inner}{_json.encode_basestring_ascii(str(k))}: {_pretty(v, indent, inner)}" for k, v in obj.items())
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and obj:
        return "[\n" + ",\n".join(inner + _pretty(v, indent, inner) for v in obj) + "\n" + pad + "]"
    return "".join(_encode(obj, 0))
