"""The `latentkit` command line. `latentkit.cli:run` is the console entry point; the app and its
command table are in app.py, the commands in one module per topic, their options in options.py.
"""

from latentkit.cli.app import app, main, run

__all__ = ["app", "main", "run"]
