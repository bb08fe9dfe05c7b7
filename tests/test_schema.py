"""Schema tests: our example configs, our validator, and the reference ``jsonschema`` must all agree.

Pure unit tests (no root, no containers).  ``tests/configs/valid`` must pass; every file in
``tests/configs/invalid`` breaks exactly one rule, and ``INVALID`` below names the JSON path and
a fragment of the message we expect for it.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from referencing import Registry, Resource

from ociruntime import validate
from ociruntime.errors import ConfigError
from ociruntime.spec import default_config

CONFIGS = Path(__file__).parent / "configs"
SPECS = Path(__file__).parent.parent / "specs"
VALID = sorted(p.name for p in (CONFIGS / "valid").glob("*.json"))

# file name -> (JSON path of the first error, fragment of its message)
INVALID = {
    "not-an-object.json": ("", "must be an object"),
    "ociversion-missing.json": ("ociVersion", "is required"),
    "ociversion-not-semver.json": ("ociVersion", "must be a SemVer 2.0.0 version"),
    "ociversion-number.json": ("ociVersion", "must be a string (got 1.1)"),
    "ociversion-major-2.json": ("ociVersion", "unsupported ociVersion 2.0.0"),
    "ociversion-major-0.json": ("ociVersion", "unsupported ociVersion 0.5.0"),
    "ociversion-before-1.0.0.json": ("ociVersion", "unsupported ociVersion 1.0.0-rc5"),
    "root-missing.json": ("root", "is required"),
    "root-path-missing.json": ("root.path", "is required"),
    "root-readonly-string.json": ("root.readonly", 'must be a boolean (got "true")'),
    "mount-destination-missing.json": ("mounts[1].destination", "is required"),
    "mount-option-not-string.json": ("mounts[0].options[1]", "must be a string (got 1)"),
    "mount-uidmappings-alone.json": ("mounts[0].gidMappings", "is required when uidMappings is set"),
    "process-cwd-missing.json": ("process.cwd", "is required"),
    "process-cwd-relative.json": ("process.cwd", 'must be an absolute path (got "home/user")'),
    "process-args-missing.json": ("process.args", "is required"),
    "process-args-empty.json": ("process.args", "must have at least 1 item"),
    "process-terminal-string.json": ("process.terminal", 'must be a boolean (got "yes")'),
    "process-consolesize-width-missing.json": ("process.consoleSize.width", "is required"),
    "process-env-not-array.json": ("process.env", 'must be an array (got "PATH=/bin")'),
    "capability-bad-name.json": ("process.capabilities.bounding[1]", "must be a capability name"),
    "capability-lowercase.json": ("process.capabilities.ambient[0]", '(got "cap_kill")'),
    "rlimit-soft-missing.json": ("process.rlimits[0].soft", "is required"),
    "rlimit-bad-type.json": ("process.rlimits[0].type", "must be an rlimit name"),
    "rlimit-negative.json": ("process.rlimits[0].hard", "must be >= 0 (got -1)"),
    "rlimit-uint64-overflow.json": ("process.rlimits[0].soft", "must be <= 18446744073709551615"),
    "rlimit-integral-float.json": ("process.rlimits[0].soft", "must be an integer (got 1024.0)"),
    "user-uid-negative.json": ("process.user.uid", "must be >= 0 (got -1)"),
    "user-gid-float.json": ("process.user.gid", "must be an integer (got 1.5)"),
    "user-uid-too-big.json": ("process.user.uid", "must be <= 4294967295"),
    "user-uid-boolean.json": ("process.user.uid", "must be an integer (got true)"),
    "user-additionalgids-negative.json": ("process.user.additionalGids[1]", "must be >= 0"),
    "scheduler-bad-policy.json": ("process.scheduler.policy", "must be one of SCHED_OTHER, SCHED_FIFO"),
    "iopriority-out-of-range.json": ("process.ioPriority.priority", "must be <= 7 (got 8)"),
    "hook-relative-path.json": ("hooks.prestart[0].path", 'must be an absolute path (got "bin/hook")'),
    "hook-timeout-zero.json": ("hooks.poststart[1].timeout", "must be >= 1 (got 0)"),
    "hook-path-missing.json": ("hooks.createRuntime[0].path", "is required"),
    "hooks-not-array.json": ("hooks.poststop", "must be an array"),
    "annotation-value-number.json": ('annotations["com.example.gpu-cores"]', "must be a string (got 2)"),
    "annotation-empty-key.json": ("annotations", 'key "" must not be empty'),
    "namespace-bad-type.json": (
        "linux.namespaces[2].type",
        'must be one of pid, network, mount, ipc, uts, user, cgroup, time (got "foo")'),
    "namespace-type-missing.json": ("linux.namespaces[0].type", "is required"),
    "namespace-relative-path.json": ("linux.namespaces[1].path", "must be an absolute path"),
    "idmapping-negative-hostid.json": ("linux.uidMappings[0].hostID", "must be >= 0 (got -1000)"),
    "idmapping-size-missing.json": ("linux.gidMappings[0].size", "is required"),
    "device-bad-type.json": ("linux.devices[0].type", 'must be one of c, b, u, p (got "x")'),
    "device-major-float.json": ("linux.devices[0].major", "must be an integer (got 10.5)"),
    "device-filemode-negative.json": ("linux.devices[0].fileMode", "must be >= 0"),
    "memory-limit-float.json": ("linux.resources.memory.limit", "must be an integer (got 536870912.5)"),
    "memory-limit-string.json": ("linux.resources.memory.limit", 'must be an integer (got "512M")'),
    "memory-limit-int64-overflow.json": ("linux.resources.memory.limit", "must be <= 9223372036854775807"),
    "cpu-shares-negative.json": ("linux.resources.cpu.shares", "must be >= 0 (got -1024)"),
    "blockio-weight-uint16-overflow.json": ("linux.resources.blockIO.weight", "must be <= 65535 (got 70000)"),
    "hugepage-bad-pagesize.json": ("linux.resources.hugepageLimits[0].pageSize", '(got "64kB")'),
    "rdma-no-limit.json": ("linux.resources.rdma.mlx5_1", "must satisfy one of"),
    "rdma-not-uint32.json": (
        "linux.resources.rdma.mlx5_1.hcaHandles", 'must be an integer (got "notauint32")'),
    "device-cgroup-allow-missing.json": ("linux.resources.devices[1].allow", "is required"),
    "device-cgroup-bad-access.json": (
        "linux.resources.devices[0].access", "must be a combination of r, w and m"),
    "pids-limit-float.json": ("linux.resources.pids.limit", "must be an integer (got 100.5)"),
    "unified-value-number.json": ('linux.resources.unified["memory.max"]', "must be a string (got 1024)"),
    "rootfs-propagation-bad.json": ("linux.rootfsPropagation", '(got "recursive")'),
    "seccomp-bad-default-action.json": ("linux.seccomp.defaultAction", '(got "SCMP_ACT_DENY")'),
    "seccomp-syscall-names-empty.json": ("linux.seccomp.syscalls[0].names", "must have at least 1 item"),
    "seccomp-bad-arch.json": ("linux.seccomp.architectures[0]", '(got "x86_64")'),
    "seccomp-metadata-without-listener.json": (
        "linux.seccomp.listenerPath", "is required when listenerMetadata is set"),
    "seccomp-arg-bad-op.json": ("linux.seccomp.syscalls[0].args[0].op", '(got "SCMP_CMP_XOR")'),
    "sysctl-value-number.json": ('linux.sysctl["net.ipv4.ip_forward"]', "must be a string (got 1)"),
    "masked-path-relative.json": ("linux.maskedPaths[1]", 'must be an absolute path (got "proc/kcore")'),
    "timeoffset-nanosecs-negative.json": ("linux.timeOffsets.monotonic.nanosecs", "must be >= 0"),
    "timeoffset-bad-clock.json": ("linux.timeOffsets", 'key "realtime" must be one of boottime, monotonic'),
    "personality-bad-domain.json": ("linux.personality.domain", '(got "LINUX64")'),
    "memorypolicy-mode-missing.json": ("linux.memoryPolicy.mode", "is required"),
    "intelrdt-membw-prefix.json": ("linux.intelRdt.memBwSchema", "must be a schema starting with MB:"),
    "intelrdt-schemata-newline.json": (
        "linux.intelRdt.schemata[0]", "must not be a string containing a newline"),
    "netdevice-name-number.json": ("linux.netDevices.eth0.name", "must be a string (got 23)"),
    "linux-not-object.json": ("linux", "must be an object"),
}

# Not schema violations: the schema allows any SemVer, the runtime implements 1.x from 1.0.0 on.
VERSION_POLICY = {name for name, (_, text) in INVALID.items() if text.startswith("unsupported ociVersion")}


def load(kind, name):
    return json.loads((CONFIGS / kind / name).read_text())


def test_examples_are_listed():
    assert len(VALID) >= 12
    assert sorted(p.name for p in (CONFIGS / "invalid").glob("*.json")) == sorted(INVALID)


@pytest.mark.parametrize("name", VALID)
def test_valid_example_passes(name):
    validate.validate_config(load("valid", name))


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_example_fails_at_expected_path(name):
    path, fragment = INVALID[name]
    with pytest.raises(ConfigError) as caught:
        validate.validate_config(load("invalid", name))
    assert caught.value.path == path
    assert fragment in caught.value.message
    assert str(caught.value) == f"{path or 'config.json'}: {caught.value.message}"


@pytest.mark.parametrize("rootless", [False, True])
def test_default_config_validates(rootless):
    validate.validate_config(default_config(rootless=rootless))


# --- cross-check against the reference implementation ------------------------------------------

def _schemas():
    return {p.name: json.loads(p.read_text()) for p in sorted(SPECS.glob("*.schema.json"))}


@pytest.mark.parametrize("name", sorted(p.name for p in SPECS.glob("*.schema.json")))
def test_schema_file_is_valid_draft7(name):
    jsonschema.Draft7Validator.check_schema(json.loads((SPECS / name).read_text()))


@pytest.fixture(scope="module")
def reference():
    """A jsonschema Draft-07 validator over our files, with Go's notion of an integer.

    Stock draft-07 accepts ``1.0`` as an integer; runc (Go ``encoding/json``) and our validator do not.
    """
    schemas = _schemas()
    registry = Registry().with_resources(
        (doc["$id"], Resource.from_contents(doc)) for doc in schemas.values())
    checker = jsonschema.Draft7Validator.TYPE_CHECKER.redefine("integer", lambda _, value: type(value) is int)
    go_draft7 = jsonschema.validators.extend(jsonschema.Draft7Validator, type_checker=checker)
    return go_draft7(schemas[validate.ROOT_SCHEMA], registry=registry)


@pytest.mark.parametrize("name", VALID)
def test_reference_accepts_valid_example(reference, name):
    assert list(reference.iter_errors(load("valid", name))) == []


@pytest.mark.parametrize("name", sorted(INVALID))
def test_reference_agrees_on_invalid_example(reference, name):
    """Same verdict, and the reference reports an error where we do.

    jsonschema puts "required" and "dependencies" errors on the object, we put them on the missing key.
    """
    errors = list(reference.iter_errors(load("invalid", name)))
    if name in VERSION_POLICY:
        assert errors == []
        return
    path, fragment = INVALID[name]
    if fragment.startswith("is required"):
        path = path.rpartition("[")[0] if path.endswith("]") else path.rpartition(".")[0]
    assert path in {validate.format_path(error.absolute_path) for error in errors}


# --- the interpreter itself ------------------------------------------------------------------------

_SUBSCHEMA_MAPS = ("properties", "definitions")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
_SUBSCHEMAS = ("items", "additionalProperties", "propertyNames", "not", "if", "then", "else")


def _walk(node):
    yield node
    for key in _SUBSCHEMA_MAPS:
        for sub in node.get(key, {}).values():
            yield from _walk(sub)
    for key in _SUBSCHEMA_LISTS:
        for sub in node.get(key, []):
            yield from _walk(sub)
    for key in _SUBSCHEMAS:
        if isinstance(node.get(key), dict):
            yield from _walk(node[key])


def test_every_schema_node_uses_supported_keywords():
    """Nodes no example reaches must still compile, and every $ref must resolve."""
    for name, doc in _schemas().items():
        for node in _walk(doc):
            validate._compile(node, name)


# Keywords the interpreter supports but our schemas do not (yet) use.  Module-level so the schema
# dicts outlive the run: compiled plans are cached by id().
KEYWORD_CASES = [
    ({"oneOf": [{"type": "integer"}, {"minimum": 0}]}, 5, "exactly one of 2 alternatives (satisfies 2)"),
    ({"oneOf": [{"type": "integer"}, {"type": "string"}]}, 5, None),
    ({"oneOf": [{"type": "integer"}, {"type": "string"}]}, None, "must satisfy one of: must be an integer"),
    ({"allOf": [{"type": "integer"}, {"maximum": 3}]}, 5, "must be <= 3 (got 5)"),
    ({"const": "v1"}, "v2", 'must be "v1" (got "v2")'),
    ({"enum": [1, True, "a"]}, True, None),
    ({"enum": [1, "a"]}, True, 'must be one of 1, a (got true)'),
    ({"type": "number"}, 2.5, None),
    ({"type": "number"}, False, "must be a number (got false)"),
    ({"type": ["string", "null"]}, None, None),
    ({"type": ["string", "null"]}, 0, "must be a string or null (got 0)"),
    ({"if": {"const": 0}, "then": {"maximum": 0}, "else": {"minimum": 10}}, 5, "must be >= 10 (got 5)"),
    ({"minLength": 3}, "ab", "must be at least 3 characters long"),
]


@pytest.mark.parametrize(("schema", "instance", "fragment"), KEYWORD_CASES)
def test_interpreter_keywords(schema, instance, fragment):
    """Checked against stock jsonschema too: none of these involve integral floats or trailing newlines."""
    assert jsonschema.Draft7Validator(schema).is_valid(instance) == (fragment is None)
    if fragment is None:
        validate._check(instance, schema, validate.ROOT_SCHEMA, [])
        return
    with pytest.raises(ConfigError) as caught:
        validate._check(instance, schema, validate.ROOT_SCHEMA, [])
    assert fragment in caught.value.message


def test_unsupported_keyword_is_refused():
    with pytest.raises(ValueError, match="uniqueItems"):
        validate._compile({"type": "array", "uniqueItems": True}, validate.ROOT_SCHEMA)


@pytest.mark.parametrize(("field", "value"), [
    ("ociVersion", "1.3.0\n"),
    ("process.capabilities", {"bounding": ["CAP_KILL\n"]}),
])
def test_dollar_anchors_at_end_of_string(field, value):
    """ECMA-262 ``$``: Python's would let a trailing newline through (jsonschema does)."""
    config = default_config()
    section, _, key = field.rpartition(".")
    (config[section] if section else config)[key] = value
    with pytest.raises(ConfigError, match="got"):
        validate.validate_config(config)


def test_installed_layout_and_cheap_import(tmp_path):
    """Installed, the schemas sit in ``ociruntime/specs``; importing must not pull in jsonschema."""
    package = Path(validate.__file__).parent
    shutil.copytree(package, tmp_path / "ociruntime", ignore=shutil.ignore_patterns("__pycache__", "specs"))
    shutil.copytree(SPECS, tmp_path / "ociruntime" / "specs")
    probe = (
        "import sys, ociruntime.validate as v\n"
        "assert 'jsonschema' not in sys.modules\n"
        "from ociruntime.spec import default_config\n"
        "v.validate_config(default_config())\n"
        "print(v.schema_dir())\n"
    )
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, check=True,
                         capture_output=True, text=True).stdout
    assert Path(out.strip()) == tmp_path / "ociruntime" / "specs"
