"""ociruntime's shim: containerd's shim v2 (``containerd-shim-ociruntime-v2``) and a
shim for engines without containerd (``client.Shim``), both one long-lived process that
drives the runtime in-process through ``ociruntime.api`` (ARCHITECTURE.md, "The shim")."""
