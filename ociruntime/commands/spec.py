"""spec: write a default config.json into the bundle, like ``runc spec``."""

import json
import os

from ..errors import OCIError
from ..spec import default_config


def main(bundle=".", rootless=False):
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "x") as f:
            json.dump(default_config(rootless=rootless), f, indent="\t")
    except FileExistsError:
        raise OCIError(f"{path}: file already exists") from None
    except OSError as e:
        raise OCIError(f"{path}: {e.strerror}") from None
