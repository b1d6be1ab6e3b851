"""``python -m clearing``: the same command line as the ``clearing`` script."""

from cli.main import main

if __name__ == "__main__":
    main(prog_name="clearing")
