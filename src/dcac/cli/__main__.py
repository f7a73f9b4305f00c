"""``python -m dcac.cli`` (as ``torchrun -m dcac.cli`` starts it) runs the ``dcac`` command."""

import sys

from dcac.cli.main import main

sys.exit(main())
