"""Subcommands of the ``attnkit`` command line (see :mod:`attnkit.cli`)."""
