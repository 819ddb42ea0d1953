import os
import sys


# Tests run against the installed package (pip install / PYTHONPATH); without one, against the
# source tree when its extension was built in place (python setup.py build_ext --inplace).
try:
    import topk  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU and topk's CUDA backend")
