"""``python -m yellowstone.plugins.tfserving``: the drop-in TF Serving server."""

import sys

from yellowstone.plugins.tfserving import main

sys.exit(main())
