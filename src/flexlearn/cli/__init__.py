"""The `flex` command-line interface."""

from flexlearn.cli.app import app

__all__ = ["app"]
