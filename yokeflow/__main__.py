import sys

from yokeflow.cli import main

sys.exit(main())
