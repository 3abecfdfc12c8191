"""``python -m ablate``: the ``ablate`` command."""

from .cli import main

raise SystemExit(main())
