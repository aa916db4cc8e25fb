"""Allow ``python -m edge_runtime`` as an alias of the ``edge-runtime`` command."""

from edge_runtime.cli import main

raise SystemExit(main())
