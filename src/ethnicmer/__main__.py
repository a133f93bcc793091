"""``python -m ethnicmer`` runs the command line."""

from ethnicmer.cli import main

main()
