"""Run the binding tests under this interpreter (meson test calls this).

Exit status: 0 passed, 1 failed, 77 skipped (meson's code) when
MMAINT_REQUIRE_NUMPY is set and this interpreter has no numpy.
"""

import os
import sys
import unittest

here = os.path.dirname(os.path.abspath(__file__))
try:
    import numpy
    have = "numpy %s" % numpy.__version__
except ImportError:
    have = "no numpy"
    if os.environ.get("MMAINT_REQUIRE_NUMPY"):
        print("SKIP: %s has no numpy (Debian: apt-get install python3-numpy)" % sys.executable)
        sys.exit(77)
print("python %s (%s), %s" % (sys.version.split()[0], sys.executable, have))
sys.path.insert(0, here)
suite = unittest.defaultTestLoader.discover(here, pattern="test_*.py", top_level_dir=here)
result = unittest.TextTestRunner(verbosity=2).run(suite)
sys.exit(0 if result.wasSuccessful() else 1)
