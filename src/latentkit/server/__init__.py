"""`latentkit serve`: a REST API and a single-page studio on the same pipeline and ops as the CLI.

Data flows one way: JSON -> schemas (checked) -> a job on the queue -> pipeline/ops -> files in
the outputs folder, served by id.
"""

from latentkit.server.app import create_app

__all__ = ["create_app"]
