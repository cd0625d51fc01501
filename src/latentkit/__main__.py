from latentkit.cli import run

run()
