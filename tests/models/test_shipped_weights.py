"""The shipped weight files record how they were made, without a developer's local paths."""

import json
import re

import pytest

from funknn_fast.models.checkpoint import WEIGHTS_DIR

LOCAL_PATH = re.compile(r"(?<![\w.])/(tmp|home|root|work|Users)/")


@pytest.mark.parametrize("path", sorted(WEIGHTS_DIR.glob("*.json")), ids=lambda p: p.name)
def test_no_local_paths(path):
    text = json.dumps(json.loads(path.read_text()))
    assert not LOCAL_PATH.search(text), LOCAL_PATH.search(text).group(0)
