"""spec: write a default config.json into the bundle, like ``runc spec``."""

import json
import os

from ..errors import OCIError
from ..spec import default_config


def main(bundle=".", rootless=False):
    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise OCIError(f"{path}: file already exists")
    with open(path, "w") as f:
        json.dump(default_config(rootless=rootless), f, indent="\t")
