from wuye.core.migrate import run_in_alembic

run_in_alembic()
