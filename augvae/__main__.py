"""``python -m augvae`` runs the command-line interface."""

from augvae.cli import main

raise SystemExit(main())
