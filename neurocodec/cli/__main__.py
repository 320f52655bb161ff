"""`python -m neurocodec.cli`: the command line."""

from . import run

run()
