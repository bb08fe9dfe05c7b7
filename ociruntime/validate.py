"""Validate config.json against the project's JSON Schemas (``specs/*.schema.json``).

This runs on every ``create``/``run``, so it must be cheap to import and to run:
it is a small interpreter for the subset of JSON Schema draft-07 our schemas use,
not ``jsonschema`` (which takes ~60 ms just to import).  Each schema
node is compiled the first time it is visited into a list of ``(check, arg)``
steps; the schema files themselves are read lazily, on the first validation.

Where our reading is deliberately stricter than a generic draft-07 validator:

* ``integer`` means what Go's ``encoding/json`` (and so runc) accepts: a JSON
  number without fraction or exponent.  ``1.0`` is rejected, ``true`` is not a number.
* A pattern's final ``$`` means end of string, as in ECMA-262; Python's ``$``
  would also match before a trailing newline.

Errors are raised as ``ConfigError(path, message)`` for the first violation, with
``path`` like ``linux.namespaces[2].type``.  Within an object, missing required
fields are reported first, then members in the order config.json lists them.
"""

from . import SPEC_VERSION, fastjson, pathnames
from .errors import ConfigError
from .patterns import compile_pattern

ROOT_SCHEMA = "config.schema.json"

# Keywords that only document the schema; the interpreter skips them.
_ANNOTATIONS = frozenset(("$schema", "$id", "$comment", "title", "description", "definitions", "default",
                          "examples"))
_TYPES = {
    "object": (dict,), "array": (list,), "string": (str,), "integer": (int,),
    "number": (int, float), "boolean": (bool,), "null": (type(None),),
}
_TYPE_NAMES = {
    "object": "an object", "array": "an array", "string": "a string", "integer": "an integer",
    "number": "a number", "boolean": "a boolean", "null": "null",
}

_docs = {}   # schema file name -> parsed JSON
_plans = {}  # id(schema node) -> compiled steps; nodes live as long as _docs


def schema_dir():
    """Where the schemas are: ``ociruntime/specs`` when installed, ``specs/`` in a checkout."""
    here = pathnames.dirname(pathnames.abspath(__file__))
    installed = pathnames.join(here, "specs")
    if pathnames.isdir(installed):
        return installed
    return pathnames.join(pathnames.dirname(here), "specs")


def validate_config(config):
    """Raise ``ConfigError`` for the first way ``config`` breaks the schema or our version range."""
    _check(config, _doc(ROOT_SCHEMA), ROOT_SCHEMA, [])
    _check_version(config["ociVersion"])


def validate_part(inst, ref):
    """Raise ``ConfigError`` for the first way ``inst`` breaks the schema node ``ref``
    (``file.json#/pointer``): a part of a config given alone, as update's resources."""
    node, doc_name = _resolve(ref, ROOT_SCHEMA)
    _check(inst, node, doc_name, [])


def _check_version(version):
    """Accept 1.0.0 and later 1.x: the spec keeps compatibility within a major version.

    The schema has already checked the SemVer syntax, so splitting is enough here.
    """
    core, _, prerelease = version.partition("+")[0].partition("-")
    release = tuple(int(part) for part in core.split("."))
    if release[0] != 1 or (release == (1, 0, 0) and prerelease):
        supported = ".".join(SPEC_VERSION.split(".")[:2])
        raise ConfigError("ociVersion", f"unsupported ociVersion {version}: "
                                        f"this runtime implements 1.0.0 to {supported}.x")


def _doc(name):
    doc = _docs.get(name)
    if doc is None:
        with open(pathnames.join(schema_dir(), name), encoding="utf-8") as f:
            doc = _docs[name] = fastjson.loads(f.read())
    return doc


def _resolve(ref, doc_name):
    """Follow ``file.json#/json/pointer`` or ``#/json/pointer`` to ``(node, file)``."""
    file_part, _, pointer = ref.partition("#")
    name = file_part.rsplit("/", 1)[-1] or doc_name
    node = _doc(name)
    for token in filter(None, pointer.split("/")):
        node = node[token.replace("~1", "/").replace("~0", "~")]
    return node, name


def _check(inst, schema, doc_name, path):
    plan = _plans.get(id(schema))
    if plan is None:
        plan = _plans[id(schema)] = _compile(schema, doc_name)
    for step, arg in plan:
        step(inst, arg, path)


def _compile(schema, doc_name):
    """Turn one schema node into the steps that check it; unknown keywords are an error.

    ``type`` goes first so a wrong type is reported as such; the rest keep schema order.
    Refusing keywords we do not implement keeps a schema edit from being silently ignored.
    """
    if not isinstance(schema, dict):
        raise TypeError(f"{doc_name}: boolean schemas are not supported by ociruntime.validate")
    if "$ref" in schema:  # draft-07: keywords next to $ref are ignored
        target, target_doc = _resolve(schema["$ref"], doc_name)
        return [(_step_ref, (target, target_doc))]
    plan = []
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        allowed = tuple(t for name in names for t in _TYPES[name])
        plan.append((_step_type, (allowed, " or ".join(_TYPE_NAMES[n] for n in names))))
    members_done = False
    for key, value in schema.items():
        if key in _ANNOTATIONS or key == "type":
            continue
        if key in ("properties", "additionalProperties"):
            if not members_done:
                members_done = True
                extra = schema.get("additionalProperties", True)
                plan.append((_step_members, (schema.get("properties", {}), extra, doc_name)))
        elif key in ("required", "minItems", "minLength", "minimum", "maximum", "dependencies"):
            plan.append((_SIMPLE_STEPS[key], value))
        elif key in ("enum", "const"):
            values = value if key == "enum" else [value]
            plan.append((_step_enum, (values, frozenset(v for v in values if isinstance(v, str)))))
        elif key == "pattern":
            plan.append((_step_pattern, (compile_pattern(value), value, schema.get("title"))))
        elif key == "items" and isinstance(value, dict):
            plan.append((_step_items, (value, doc_name)))
        elif key == "propertyNames":
            plan.append((_step_property_names, (value, doc_name)))
        elif key in ("allOf", "anyOf", "oneOf"):
            plan.append((_COMBINATOR_STEPS[key], (value, doc_name)))
        elif key == "not":
            plan.append((_step_not, (value, doc_name)))
        elif key == "if":
            plan.append((_step_if, (value, schema.get("then"), schema.get("else"), doc_name)))
        elif key not in ("then", "else"):
            raise ValueError(f"{doc_name}: schema keyword {key!r} is not supported by ociruntime.validate")
    return plan


def _step_ref(inst, arg, path):
    _check(inst, arg[0], arg[1], path)


def _step_type(inst, arg, path):
    if type(inst) not in arg[0]:
        _fail(path, f"must be {arg[1]} (got {_show(inst)})")


def _step_members(inst, arg, path):
    if type(inst) is not dict:
        return
    properties, extra, doc_name = arg
    for key, value in inst.items():
        sub = properties.get(key, extra)
        if sub is True:  # the draft-07 default: anything goes
            continue
        path.append(key)
        _check(value, sub, doc_name, path)
        path.pop()


def _step_required(inst, required, path):
    if type(inst) is dict:
        for key in required:
            if key not in inst:
                _fail([*path, key], "is required")


def _step_dependencies(inst, dependencies, path):
    if type(inst) is dict:
        for key, needed in dependencies.items():
            if key in inst:
                for other in needed:  # only the array form: a list of property names
                    if other not in inst:
                        _fail([*path, other], f"is required when {key} is set")


def _step_min_items(inst, limit, path):
    if type(inst) is list and len(inst) < limit:
        _fail(path, f"must have at least {limit} item{'s' if limit > 1 else ''}")


def _step_min_length(inst, limit, path):
    if type(inst) is str and len(inst) < limit:
        _fail(path, "must not be empty" if limit == 1 else f"must be at least {limit} characters long")


def _step_minimum(inst, limit, path):
    if type(inst) in (int, float) and inst < limit:
        _fail(path, f"must be >= {limit} (got {_show(inst)})")


def _step_maximum(inst, limit, path):
    if type(inst) in (int, float) and inst > limit:
        _fail(path, f"must be <= {limit} (got {_show(inst)})")


def _step_enum(inst, arg, path):
    values, strings = arg
    if type(inst) is str:
        if inst in strings:
            return
    elif any(type(inst) is type(v) and inst == v for v in values):
        return
    if len(values) == 1:
        _fail(path, f"must be {_show(values[0])} (got {_show(inst)})")
    choices = ", ".join(v if isinstance(v, str) else _show(v) for v in values)
    _fail(path, f"must be one of {choices} (got {_show(inst)})")


def _step_pattern(inst, arg, path):
    matches, pattern, title = arg
    if type(inst) is str and not matches(inst):
        rule = f"be {title}" if title else f"match {pattern}"
        _fail(path, f"must {rule} (got {_show(inst)})")


def _step_items(inst, arg, path):
    if type(inst) is not list:
        return
    sub, doc_name = arg
    for index, item in enumerate(inst):
        path.append(index)
        _check(item, sub, doc_name, path)
        path.pop()


def _step_property_names(inst, arg, path):
    if type(inst) is not dict:
        return
    sub, doc_name = arg
    for key in inst:
        try:
            _check(key, sub, doc_name, path)
        except ConfigError as e:
            raise ConfigError(e.path, f"key {_show(key)} {e.message}") from None


def _step_all_of(inst, arg, path):
    for sub in arg[0]:
        _check(inst, sub, arg[1], path)


def _step_any_of(inst, arg, path):
    errors = _branch_errors(inst, arg, path)
    if len(errors) == len(arg[0]):
        _fail(path, "must satisfy one of: " + "; ".join(_relative(e, path) for e in errors))


def _step_one_of(inst, arg, path):
    errors = _branch_errors(inst, arg, path)
    matched = len(arg[0]) - len(errors)
    if matched == 0:
        _fail(path, "must satisfy one of: " + "; ".join(_relative(e, path) for e in errors))
    if matched > 1:
        _fail(path, f"must satisfy exactly one of {len(arg[0])} alternatives (satisfies {matched})")


def _step_not(inst, arg, path):
    sub, doc_name = arg
    if _passes(inst, sub, doc_name, path):
        target = _resolve(sub["$ref"], doc_name)[0] if "$ref" in sub else sub
        what = target.get("title", "valid against " + fastjson.dumps(target))
        _fail(path, f"must not be {what} (got {_show(inst)})")


def _step_if(inst, arg, path):
    condition, then, otherwise, doc_name = arg
    branch = then if _passes(inst, condition, doc_name, path) else otherwise
    if branch is not None:
        _check(inst, branch, doc_name, path)


def _passes(inst, schema, doc_name, path):
    depth = len(path)
    try:
        _check(inst, schema, doc_name, path)
    except ConfigError:
        del path[depth:]  # the failed check left its own position on the stack
        return False
    return True


def _branch_errors(inst, arg, path):
    """Check ``inst`` against each alternative; return the errors of those that fail."""
    subs, doc_name = arg
    errors = []
    depth = len(path)
    for sub in subs:
        try:
            _check(inst, sub, doc_name, path)
        except ConfigError as e:
            del path[depth:]
            errors.append(e)
    return errors


def _relative(error, path):
    """``error`` phrased relative to ``path``: ``weight is required`` rather than the full path."""
    prefix = format_path(path)
    where = error.path[len(prefix):].lstrip(".")
    return f"{where} {error.message}" if where else error.message


_SIMPLE_STEPS = {
    "required": _step_required, "minItems": _step_min_items, "minLength": _step_min_length,
    "minimum": _step_minimum, "maximum": _step_maximum, "dependencies": _step_dependencies,
}
_COMBINATOR_STEPS = {"allOf": _step_all_of, "anyOf": _step_any_of, "oneOf": _step_one_of}


def _fail(path, message):
    raise ConfigError(format_path(path), message)


def format_path(path):
    """``["linux", "namespaces", 2, "type"]`` -> ``linux.namespaces[2].type``; odd keys are quoted."""
    out = ""
    for part in path:
        if type(part) is int:
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}" if out else part
        else:
            out += f"[{fastjson.dumps(part)}]"
    return out


def _show(value):
    """A JSON rendering of ``value`` short enough for a one-line error."""
    try:
        text = fastjson.dumps(value)
    except RecursionError:
        return "a value nested too deeply to show"
    return text if len(text) <= 60 else text[:57] + "..."
