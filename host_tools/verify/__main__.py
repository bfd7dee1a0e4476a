import sys

from host_tools.verify.cli import main

sys.exit(main())
