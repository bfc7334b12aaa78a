"""``python -m server`` is the ``sessionhub`` command."""

from server.cli import main

raise SystemExit(main())
