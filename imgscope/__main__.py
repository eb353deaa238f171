"""``python -m imgscope`` runs the same CLI as the ``imgscope`` script."""

from imgscope.cli import run

if __name__ == "__main__":
    run()
