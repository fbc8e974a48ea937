"""The one Alembic environment of every service: `upgrade` points Alembic here and at the
service's own migrations/versions."""

from wuye.core.migrate import run_in_alembic

run_in_alembic()
