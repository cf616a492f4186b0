"""``python -m symcnn``: the same as the ``symcnn`` command."""

import sys

from symcnn.cli.main import main

sys.exit(main())
