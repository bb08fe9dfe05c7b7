"""Unit tests of ociruntime.passwd: HOME from the container's /etc/passwd as runc sets it,
and the in-root walk that reads the file. Pure: no root, no containers."""

import os

import pytest

from ociruntime import passwd, plan
from ociruntime.spec import default_config

PASSWD = "root:x:0:0:root:/root:/bin/sh\n# a comment\n\n  app:x:1000:1000::/home/app:/bin/sh  \n" \
         "bad:x:abc:0::/bad:/bin/sh\ntwin:x:1000:1::/home/twin:/bin/sh\nshort:x:7\n"


@pytest.mark.parametrize("uid, home", [(0, "/root"), (1000, "/home/app"), (4242, "/"), (7, "")])
def test_home_is_the_first_entry_of_the_uid(uid, home):
    assert passwd.home(PASSWD, uid) == home


def test_home_without_a_file_is_root_dir():
    assert passwd.home(None, 0) == "/"


@pytest.mark.parametrize("env, expected", [
    (["PATH=/bin"], ["PATH=/bin", "HOME=/"]),
    (["HOME=", "PATH=/bin"], ["PATH=/bin", "HOME=/"]),  # empty counts as unset (runc)
    (["HOME=/mine", "PATH=/bin"], ["HOME=/mine", "PATH=/bin"]),
])
def test_with_home_adds_home_only_when_missing(env, expected):
    looked = []
    assert passwd.with_home(env, 0, lambda: looked.append(1)) == expected  # no passwd file: "/"
    assert looked == ([] if "HOME=/mine" in env else [1]), "the file is looked for only when HOME is missing"


@pytest.fixture
def rootfs(tmp_path):
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "usr/lib").mkdir(parents=True)
    (tmp_path / "host-passwd").write_text("root:x:0:0::/host-secret:/bin/sh\n")
    return root


def test_read_follows_symlinks_inside_the_root(rootfs):
    (rootfs / "usr/lib/passwd").write_text("root:x:0:0::/from-usr-lib:/bin/sh\n")
    (rootfs / "etc/passwd").symlink_to("/usr/lib/passwd")
    assert passwd.home(passwd.read(str(rootfs), "/etc/passwd"), 0) == "/from-usr-lib"
    (rootfs / "etc/passwd").unlink()
    (rootfs / "etc/passwd").symlink_to("../../../../../../usr/lib/passwd")  # ".." stops at the root
    assert passwd.home(passwd.read(str(rootfs), "/etc/passwd"), 0) == "/from-usr-lib"


@pytest.mark.parametrize("target", ["{host}", "../../host-passwd", "../../../../{host}"])
def test_read_never_leaves_the_root(rootfs, tmp_path, target):
    host = str(tmp_path / "host-passwd")
    (rootfs / "etc/passwd").symlink_to(target.format(host=host.lstrip("/") if "../" in target else host))
    assert passwd.read(str(rootfs), "/etc/passwd") is None


def test_read_refuses_what_is_not_a_regular_file(rootfs):
    os.mkfifo(rootfs / "etc/passwd")  # reading it would block
    assert passwd.read(str(rootfs), "/etc/passwd") is None
    (rootfs / "etc/passwd").unlink()
    (rootfs / "etc/passwd").symlink_to("passwd")  # a loop
    assert passwd.read(str(rootfs), "/etc/passwd") is None


def test_plan_reads_a_bind_mounted_passwd(tmp_path, rootfs):
    """What the container will see: a bind mount over /etc/passwd (podman's) or over /etc."""
    (tmp_path / "etcdir").mkdir()
    (tmp_path / "etcdir/passwd").write_text("root:x:0:0::/from-etc-bind:/bin/sh\n")
    cfg = default_config()
    cfg["process"]["env"] = []
    cfg["mounts"].append({"destination": "/etc/passwd", "type": "bind", "source": str(tmp_path / "host-passwd"),
                          "options": ["bind"]})
    assert plan.build(cfg, str(tmp_path), "c")["process"]["env"] == ["HOME=/host-secret"]
    cfg["mounts"].append({"destination": "/etc", "type": "bind", "source": "etcdir", "options": ["rbind"]})
    assert plan.build(cfg, str(tmp_path), "c")["process"]["env"] == ["HOME=/from-etc-bind"]
    cfg["mounts"].append({"destination": "/etc", "type": "tmpfs", "source": "tmpfs"})
    assert plan.build(cfg, str(tmp_path), "c")["process"]["env"] == ["HOME=/"]
