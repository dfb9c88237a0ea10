"""``python -m imagereflector`` runs the command line."""

from imagereflector.cli import main

raise SystemExit(main())
