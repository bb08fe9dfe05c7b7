"""linux.netDevices: move host network devices into the container's network namespace
with rtnetlink, from the parent, once the init waits at 'H' or 'R' (an init that failed
before has said why) and before any hook.

Per device, as runc does (and as config-linux.md asks): note the device's permanent
addresses of global scope — before it goes down, unlike runc: with keep_addr_on_down at
0 (the default) a down device has no IPv6 addresses left to note — set it down, move and
rename it in one RTM_NEWLINK (IFLA_NET_NS_FD + IFLA_IFNAME; a name with %d is a template
the kernel fills in), then, from a socket inside the container's namespace, add those
addresses back and set it up. A name already taken in there is refused before the device
is touched: the kernel would move it first and fail the rename after, with the device
gone from the host. A device that could not be moved is set up again if it was. What
happens to moved devices when the namespace goes (a physical one comes back, a virtual
one is destroyed) is the kernel's business.
"""

import _socket
import posix
import struct

from .errors import OCIError

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_GETLINK, RTM_NEWADDR, RTM_GETADDR = 16, 18, 20, 22
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE, NLM_F_DUMP = 0x1, 0x4, 0x200, 0x400, 0x300
IFLA_ADDRESS, IFLA_IFNAME, IFLA_NET_NS_FD = 1, 3, 28
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST, IFA_FLAGS = 1, 2, 4, 8
IFA_F_PERMANENT = 0x80
# Flags an address is added with (if_addr.h): NODAD, HOMEADDRESS, MANAGETEMPADDR, NOPREFIXROUTE,
# MCAUTOJOIN. The others are the kernel's state of the address.
_ADD_FLAGS = 0x02 | 0x10 | 0x100 | 0x200 | 0x400
RT_SCOPE_UNIVERSE = 0
IFF_UP = 0x1

_NLMSG = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTA = struct.Struct("=HH")  # len, type


def valid_name(name):
    """The kernel's dev_valid_name: 1 to 15 bytes, not . or .., no /, : or whitespace."""
    raw = name.encode()
    return 0 < len(raw) < 16 and name not in (".", "..") and not any(c in "/:" or c.isspace() for c in name)


def _attr(kind, payload):
    data = _RTA.pack(_RTA.size + len(payload), kind) + payload
    return data + b"\0" * (-len(data) % 4)


def _attrs(data):
    """rtattrs → {type: payload} (the last of a repeated type)."""
    out, off = {}, 0
    while off + _RTA.size <= len(data):
        length, kind = _RTA.unpack_from(data, off)
        if length < _RTA.size:
            break
        out[kind & 0x3FFF] = data[off + _RTA.size:off + length]
        off += (length + 3) & ~3
    return out


class _Netlink:
    """One NETLINK_ROUTE socket: requests acknowledged, dumps read to NLMSG_DONE."""

    def __init__(self, sock):
        self.sock = sock
        self.seq = 0

    def close(self):
        self.sock.close()

    def _send(self, kind, flags, body):
        self.seq += 1
        self.sock.send(_NLMSG.pack(_NLMSG.size + len(body), kind, flags | NLM_F_REQUEST, self.seq, 0) + body)
        return self.seq

    def _replies(self, seq):
        while True:
            data = self.sock.recv(65536)
            if not data:
                return
            off = 0
            while off + _NLMSG.size <= len(data):
                length, kind, _, rseq, _ = _NLMSG.unpack_from(data, off)
                body = data[off + _NLMSG.size:off + length]
                off += (length + 3) & ~3
                if rseq != seq:
                    continue
                if kind == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", body)[0]
                    if err:
                        raise OSError(err, posix.strerror(err))
                    return
                if kind == NLMSG_DONE:
                    return
                yield kind, body

    def request(self, kind, body, flags=0):
        """Send one request and wait for its acknowledgement (OSError if refused)."""
        for _ in self._replies(self._send(kind, flags | NLM_F_ACK, body)):
            pass

    def dump(self, kind, body):
        return list(self._replies(self._send(kind, NLM_F_DUMP, body)))

    def link(self, index=0, name=None):
        """(index, flags, attrs) of one link, by index or name."""
        body = _IFINFO.pack(0, 0, index, 0, 0) + (_attr(IFLA_IFNAME, name.encode() + b"\0") if name else b"")
        for _, reply in self._replies(self._send(RTM_GETLINK, 0, body)):
            _, _, index, flags, _ = _IFINFO.unpack_from(reply)
            return index, flags, _attrs(reply[_IFINFO.size:])
        raise OSError(19, posix.strerror(19))

    def links(self):
        return [(*_IFINFO.unpack_from(b)[2:4], _attrs(b[_IFINFO.size:])) for _, b in
                self.dump(RTM_GETLINK, _IFINFO.pack(0, 0, 0, 0, 0))]

    def set_up(self, index, up):
        self.request(RTM_NEWLINK, _IFINFO.pack(0, 0, index, IFF_UP if up else 0, IFF_UP))

    def global_addresses(self, index):
        """The device's permanent addresses of global scope: [(ifaddrmsg fields, attrs)]."""
        out = []
        for _, body in self.dump(RTM_GETADDR, _IFADDR.pack(0, 0, 0, 0, 0)):
            family, prefixlen, flags, scope, at = _IFADDR.unpack_from(body)
            attrs = _attrs(body[_IFADDR.size:])
            if IFA_FLAGS in attrs:
                flags = struct.unpack("=I", attrs[IFA_FLAGS][:4])[0]
            if at == index and flags & IFA_F_PERMANENT and scope == RT_SCOPE_UNIVERSE:
                out.append(((family, prefixlen, flags), attrs))
        return out

    def add_address(self, index, address):
        (family, prefixlen, flags), attrs = address
        body = _IFADDR.pack(family, prefixlen, 0, RT_SCOPE_UNIVERSE, index)
        for kind in (IFA_LOCAL, IFA_ADDRESS, IFA_BROADCAST):
            if kind in attrs:
                body += _attr(kind, attrs[kind])
        body += _attr(IFA_FLAGS, struct.pack("=I", flags & _ADD_FLAGS))
        self.request(RTM_NEWADDR, body, NLM_F_CREATE | NLM_F_EXCL)


def _netns_socket(ns_path):
    from ._native import lib

    fd = lib.oci_netns_socket(ns_path.encode(), _socket.AF_NETLINK, _socket.SOCK_RAW, NETLINK_ROUTE)
    if fd < 0:
        raise OSError(-fd, posix.strerror(-fd))
    return _socket.socket(fileno=fd)


def move(devices, pid):
    """Move each (host name, name in the container or None) into /proc/<pid>/ns/net."""
    if not devices:
        return
    ns_path = f"/proc/{pid}/ns/net"
    host = inside = nsfd = None
    try:
        try:
            host = _Netlink(_socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC,
                                           NETLINK_ROUTE))
            nsfd = posix.open(ns_path, posix.O_RDONLY | posix.O_CLOEXEC)
            inside = _Netlink(_netns_socket(ns_path))
        except OSError as e:
            raise OCIError(f"linux.netDevices: rtnetlink in {ns_path} and here: {e.strerror}") from None
        for name, new_name in devices:
            _move_one(host, inside, nsfd, name, new_name or name)
    finally:
        for closing in (host, inside):
            if closing is not None:
                closing.close()
        if nsfd is not None:
            posix.close(nsfd)


def _move_one(host, inside, nsfd, name, new_name):
    label = f"linux.netDevices.{name}"
    try:
        index, flags, attrs = host.link(name=name)
    except OSError as e:
        raise OCIError(f"{label}: no such network device on the host ({e.strerror})") from None
    if "%" not in new_name:
        # The kernel moves first and renames after: a name taken there would fail only once
        # the device is gone from the host. Checked first, as the spec asks.
        try:
            inside.link(name=new_name)
        except OSError:
            pass
        else:
            raise OCIError(f"{label}: {new_name} already exists in the container's network namespace")
    mac = attrs.get(IFLA_ADDRESS)
    addresses = host.global_addresses(index)
    try:
        host.set_up(index, False)
        host.request(RTM_NEWLINK, _IFINFO.pack(0, 0, index, 0, 0) + _attr(IFLA_IFNAME, new_name.encode() + b"\0")
                     + _attr(IFLA_NET_NS_FD, struct.pack("=I", nsfd)))
    except OSError as e:
        if flags & IFF_UP:
            try:
                host.set_up(index, True)
            except OSError:
                pass
        raise OCIError(f"{label}: moving it into the container's network namespace: {e.strerror}") from None
    try:
        if "%" in new_name:
            # A name template: the kernel chose the name; the device keeps its hardware address.
            index = next(i for i, _, a in inside.links() if mac is not None and a.get(IFLA_ADDRESS) == mac)
        else:
            index = inside.link(name=new_name)[0]
        for address in addresses:
            inside.add_address(index, address)
        inside.set_up(index, True)
    except (OSError, StopIteration) as e:
        why = getattr(e, "strerror", None) or "not found after the move"
        raise OCIError(f"{label}: setting it up in the container's network namespace: {why}") from None
