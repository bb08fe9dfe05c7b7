"""ociruntime.pathnames behaves as posixpath/os does, on generated paths and on a real tree;
and the commands that must stay lean never import ``os`` (the reason pathnames exists)."""

import os
import posixpath
import subprocess
import tempfile

import pytest
from conftest import RUNTIME
from hypothesis import given, settings
from hypothesis import strategies as st

from ociruntime import pathnames

# Paths built from the pieces normpath and join care about.
PATHS = st.lists(st.sampled_from(["/", "//", "///", ".", "..", "a", "b.c", "...", "x/", "/y"]),
                 max_size=8).map("".join)


@settings(max_examples=2000, deadline=None)
@given(path=PATHS)
def test_normpath_basename_dirname_match_posixpath(path):
    assert pathnames.normpath(path) == posixpath.normpath(path)
    assert pathnames.basename(path) == posixpath.basename(path)
    assert pathnames.dirname(path) == posixpath.dirname(path)


@settings(max_examples=1000, deadline=None)
@given(first=PATHS, rest=st.lists(PATHS, max_size=3))
def test_join_matches_posixpath(first, rest):
    assert pathnames.join(first, *rest) == posixpath.join(first, *rest)


@settings(max_examples=300, deadline=None)
@given(path=PATHS)
def test_abspath_matches_posixpath(path):
    assert pathnames.abspath(path) == posixpath.abspath(path)


def test_file_type_helpers_and_realpath(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("")
    (tmp_path / "link").symlink_to("dir")
    (tmp_path / "dangling").symlink_to("nowhere")
    for name in ("dir", "file", "link", "dangling", "missing", "file/below"):
        path = str(tmp_path / name)
        assert pathnames.exists(path) == os.path.exists(path), name
        assert pathnames.isdir(path) == os.path.isdir(path), name
        assert pathnames.isfile(path) == os.path.isfile(path), name
    for name in ("dir", "file", "link", "link/../file"):
        path = str(tmp_path / name)
        assert pathnames.realpath(path) == os.path.realpath(path), name
    with pytest.raises(FileNotFoundError):
        pathnames.realpath(str(tmp_path / "dangling"))


def test_makedirs(tmp_path):
    target = tmp_path / "a" / "b" / "c"
    pathnames.makedirs(str(target), 0o711)
    assert target.is_dir()
    assert (target.stat().st_mode & 0o777) == 0o711 & ~_umask()
    pathnames.makedirs(str(target))  # existing: fine


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _imported(*args):
    """Modules the installed command imports for one command (-X importtime, which the
    launcher adds for OCIRUNTIME_IMPORTTIME)."""
    # stderr into a file, not a pipe: a created container inherits it and would hold a pipe open.
    with tempfile.TemporaryFile("w+") as err:
        code = subprocess.run([RUNTIME, *args], stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
                              env={**os.environ, "OCIRUNTIME_IMPORTTIME": "1"}, timeout=60).returncode
        err.seek(0)
        lines = err.read().splitlines()
    return code, {line.rsplit("|", 1)[1].strip() for line in lines if line.startswith("import time:")}


HEAVY = {"os", "posixpath", "re", "json", "click", "jsonschema", "subprocess"}


@pytest.mark.root
def test_hot_commands_import_nothing_heavy(runtime, make_bundle):
    root = ["--root", runtime.root]
    cid = runtime.new_id()
    commands = [["create", "--bundle", make_bundle("sleep", "30").path, cid], ["state", cid], ["start", cid],
                ["kill", cid, "KILL"], ["delete", "--force", cid],
                ["run", "--bundle", make_bundle("true").path, runtime.new_id()]]
    for command in commands:
        code, modules = _imported(*root, *command)
        assert code == 0, command
        assert "ociruntime.main" in modules, command  # the parse really saw the imports
        assert modules & HEAVY == set(), command
