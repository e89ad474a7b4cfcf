import sys

from hiermlp.cli import main

sys.exit(main())
