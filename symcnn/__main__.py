"""``python -m symcnn``: the same as the ``symcnn`` command."""

import sys

from symcnn.cli.interrupt import MESSAGE, STATUS, interrupts_end_cleanly

try:
    with interrupts_end_cleanly():
        from symcnn.cli.main import main
except KeyboardInterrupt:  # Ctrl-C while Python loads the command: one line, as main says it
    print(MESSAGE, file=sys.stderr)
    sys.exit(STATUS)

sys.exit(main())
