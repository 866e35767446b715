"""An example service built on pgqueue; see ``app.py``. Run it with ``python -m pgqueue demo``."""
