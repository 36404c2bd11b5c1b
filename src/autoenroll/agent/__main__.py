"""``python -m autoenroll.agent`` is the ``autoenroll`` command."""

from autoenroll.agent.cli import main

raise SystemExit(main())
