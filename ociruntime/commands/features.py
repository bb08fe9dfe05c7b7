"""features: what this runtime really implements, per runtime-spec features.md.

features.md has no entry for linux.personality, process.scheduler, process.ioPriority or
process.execCPUAffinity (all implemented, the last checked only: it is for `exec`)."""

import json
import sys

from .. import SPEC_VERSION
from ..linux import capabilities, lsm, mountopts, namespaces, procattrs, seccomp


def features():
    mount_options = sorted(set(mountopts.FLAGS) | set(mountopts.PROPAGATION) | mountopts.EXTENSIONS)
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": SPEC_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": mount_options,
        "linux": {
            "namespaces": sorted(namespaces.FLAGS),
            "capabilities": capabilities.NAMES,
            # v2 is tested in the qemu lane (tests/vm); rdma limits are written (rdma.max) but
            # untested without an RDMA device: not claimed.
            "cgroup": {"v1": True, "v2": True, "systemd": True, "systemdUser": False, "rdma": False},
            "seccomp": {
                "enabled": True,
                "actions": sorted(seccomp.ACTIONS),
                "operators": sorted(seccomp.OPERATORS),
                "archs": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
                "knownFlags": sorted(seccomp.FLAGS),
                "supportedFlags": _supported_seccomp_flags(),
            },
            # features-linux.md calls these "whether the runtime supports" the LSM, irrelevant
            # to the host. This runtime always has the code, so that would always be true;
            # but a setting for an LSM the host lacks is refused, so here "enabled" is what
            # works: true only where create would apply the setting (linux/lsm.py).
            "apparmor": {"enabled": lsm.apparmor_enabled()},
            "selinux": {"enabled": lsm.selinux_enabled()},
            # Refused (plan.py): no resctrl support here, and none on this host to test it with.
            "intelRdt": {"enabled": False, "schemata": False, "monitoring": False},
            "memoryPolicy": {"modes": sorted(procattrs.MPOL_MODES), "flags": sorted(procattrs.MPOL_FLAGS)},
            "mountExtensions": {"idmap": {"enabled": False}},
            "netDevices": {"enabled": True},
        },
    }


def _supported_seccomp_flags():
    """The flags this kernel's seccomp(2) takes (WAIT_KILLABLE_RECV only with a listener)."""
    from .._native import lib

    return sorted(name for name, bit in seccomp.FLAGS.items()
                  if lib.oci_seccomp_flags_supported(bit | (seccomp.NEW_LISTENER if bit == seccomp.WAIT_KILLABLE_RECV
                                                            else 0)))


def main():
    sys.stdout.write(json.dumps(features(), indent=2) + "\n")
