"""ociruntime's containerd shim v2 (``containerd-shim-ociruntime-v2``): the folder ``shim/``,
installed as the package ``ociruntime_shim``.

A long-lived process that serves containerd's ``containerd.task.v2.Task`` over ttrpc and
publishes task events back. Its layers: ``protocol`` (containerd's messages, from the
descriptor set ``proto/build.py`` compiles), ``loop`` (one selectors loop), ``ttrpc`` (the
wire protocol, server and client).
"""
