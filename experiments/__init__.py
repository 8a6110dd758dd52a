"""Command-line tools: ``jscc <subcommand>``; each module has ``setup_args()`` and ``main(argv=None)``."""
