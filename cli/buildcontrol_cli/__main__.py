"""`python -m buildcontrol_cli`: the `buildcontrol` command."""

import sys

from buildcontrol_cli.main import main

sys.exit(main())
