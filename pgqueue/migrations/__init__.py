"""pgqueue's Alembic migrations, shipped inside the package so ``python -m pgqueue migrate`` works
from a wheel. ``alembic.ini`` at the repository root points here too."""
