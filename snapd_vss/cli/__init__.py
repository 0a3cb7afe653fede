"""vssctl, the command line for admins and requestors (``python -m snapd_vss.cli``)."""
