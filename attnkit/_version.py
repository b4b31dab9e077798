"""The release of attnkit (torch-free, for the command line and run descriptions)."""

__version__ = "0.1.0"
