"""``python -m napari_supn_anomaly.cli``: the same as the ``supn-anomaly`` command."""
from . import main

raise SystemExit(main())
