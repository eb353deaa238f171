"""``python -m imgscope`` runs the same CLI as the ``imgscope`` script."""

from imgscope.cli import main

if __name__ == "__main__":
    main()
