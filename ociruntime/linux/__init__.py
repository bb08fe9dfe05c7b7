"""Tables that translate the config's Linux words into kernel numbers (no syscalls here)."""
