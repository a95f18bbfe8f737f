"""`python -m taskdash`: users and tokens (see taskdash/cli.py); the server is taskdash.serve."""

from taskdash.cli import main

raise SystemExit(main())
