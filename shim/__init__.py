"""ociruntime's shim: containerd's shim v2 (``containerd-shim-ociruntime-v2``) and a shim
for engines without containerd (``client.Shim``) — the folder ``shim/``, installed as the
package ``ociruntime_shim``. One long-lived process serves containerd's
``containerd.task.v2.Task`` over ttrpc, drives the runtime in-process through
``ociruntime.api`` and publishes task events back (ARCHITECTURE.md, "The shim").

Its layers: ``protocol`` (containerd's messages, from the descriptor set ``proto/build.py``
compiles), ``loop`` (one selectors loop), ``ttrpc`` (the wire protocol, server and client);
``service`` (the Task service) with ``stdio``, ``mounts``, ``metrics``, ``events``; the
entry points ``main`` (start, delete) and ``daemon``; ``client`` for engines without
containerd.
"""
