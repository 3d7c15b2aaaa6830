"""``python -m core``: the command-line interface (the parser, dispatch and one module per step)."""
