"""``python -m symcnn``: the same as the ``symcnn`` command."""

import sys

try:
    from symcnn.cli.main import main
except KeyboardInterrupt:  # Ctrl-C while Python loads the command: one line, as main says it
    print("symcnn: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
