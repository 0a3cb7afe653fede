"""LVM helpers for the lvm_thin provider: running the tools and reading their reports."""
