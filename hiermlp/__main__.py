import sys

from hiermlp.cli import main

if __name__ == "__main__":  # also imported by multiprocessing's spawn workers (hiermlp compare --jobs)
    sys.exit(main())
