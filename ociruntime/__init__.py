"""ociruntime: a runc-compatible OCI runtime. Python decides, C does."""

__version__ = "0.1.0"
SPEC_VERSION = "1.3.0"
