import sys

from core.runs.warm_cli import forward

# A warm process of this installation answers the command when one is up (core.runs.warm_cli);
# otherwise it runs here.
code = forward(sys.argv[1:])
if code is None:
    from core.cli.main import main

    code = main()
sys.exit(code)
