import sys

from tl_glp.cli import main

sys.exit(main())
