import sys

from twingrad.cli import main

sys.exit(main())
