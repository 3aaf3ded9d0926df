"""Put first on the PYTHONPATH of the training processes the tests start (pretrain_helpers.ENV): they then
run as in the base install, which has neither transformers nor scipy (test extras here). Lightning imports
torchmetrics to read its version, and torchmetrics imports transformers and scipy.signal whenever they are
installed: 3.7 s of every process on the 2-core CI machine, in a suite that starts about a hundred. What
runs with everything installed stays tested so: the tests' own process, the commands that use
transformers, and the float8 import-noise check (tests/training/test_float8.py)."""

import importlib.machinery
import importlib.metadata
import os

# LIT_GPT_TESTS_HIDE (comma-separated top-level names) replaces the list: tests/test_optional_extras.py hides
# every optional extra that way
HIDDEN = set(os.environ.get("LIT_GPT_TESTS_HIDE", "transformers,scipy").split(","))
_find_spec = importlib.machinery.PathFinder.find_spec
_from_name = importlib.metadata.Distribution.from_name


def _find_spec_unless_hidden(cls, fullname, path=None, target=None):
    return None if fullname.split(".")[0] in HIDDEN else _find_spec(fullname, path, target)


def _from_name_unless_hidden(cls, name):
    # torchmetrics asks for the distribution's metadata before it imports the package
    if name.replace("-", "_").lower() in HIDDEN:
        raise importlib.metadata.PackageNotFoundError(name)
    return _from_name(name)


importlib.machinery.PathFinder.find_spec = classmethod(_find_spec_unless_hidden)
importlib.metadata.Distribution.from_name = classmethod(_from_name_unless_hidden)
