"""``python -m snapd_vss.cli`` runs vssctl."""

import sys

from snapd_vss.cli.vssctl import main

sys.exit(main())
