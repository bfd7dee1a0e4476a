# Shared imports for the harnesses: the runner, then atheris' import hook so that every firmware
# module imported afterwards is instrumented for coverage (atheris.instrument_imports).
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runner  # noqa: E402,F401  (puts the repository root on sys.path)
