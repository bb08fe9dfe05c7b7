#!/usr/bin/env python3
"""Make an OCI bundle whose rootfs is Debian's static busybox.

Usage: busybox_bundle.py DIR [ARG...]   (ARGs become process.args; default ``sh``)

Used by the README, the tests and the benchmarks, so all three run the same thing.
"""

import json
import os
import shutil
import subprocess
import sys

BUSYBOX = "/bin/busybox"


def make_rootfs(rootfs):
    """Populate ``rootfs`` with busybox and a symlink per applet, plus the usual dirs."""
    if not os.path.exists(BUSYBOX):
        raise SystemExit(f"{BUSYBOX} is missing: apt-get install busybox-static")
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "dev", "proc", "sys", "tmp", "root", "var", "run"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    os.chmod(os.path.join(rootfs, "tmp"), 0o1777)
    shutil.copy2(BUSYBOX, os.path.join(rootfs, "bin/busybox"))
    applets = subprocess.run([BUSYBOX, "--list-full"], check=True, capture_output=True, text=True).stdout.split()
    for applet in applets:
        link = os.path.join(rootfs, applet)
        if not os.path.lexists(link):
            os.symlink("/bin/busybox", link)
    with open(os.path.join(rootfs, "etc/passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    with open(os.path.join(rootfs, "etc/group"), "w") as f:
        f.write("root:x:0:\ntty:x:5:\nnogroup:x:65534:\n")


def make_bundle(bundle, args=("sh",), rootfs_from=None):
    """Write ``bundle/config.json`` (runc's default spec, no terminal) and its rootfs.

    ``rootfs_from``: an existing rootfs to copy instead of building one.
    """
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from ociruntime.spec import default_config

    os.makedirs(bundle, exist_ok=True)
    rootfs = os.path.join(bundle, "rootfs")
    if rootfs_from:
        shutil.copytree(rootfs_from, rootfs, symlinks=True)
    else:
        make_rootfs(rootfs)
    config = default_config()
    config["process"]["terminal"] = False
    config["process"]["args"] = list(args)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    return bundle


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    make_bundle(sys.argv[1], sys.argv[2:] or ("sh",))
