"""Two search workers on one PostgreSQL study.

Skipped unless GAN_LIB_TEST_POSTGRES_URL names a reachable PostgreSQL database,
such as the one `bash .ci/postgres.sh start` creates and prints.
"""

import os
import uuid

import pytest
import sqlalchemy

import test_search

URL_VARIABLE = "GAN_LIB_TEST_POSTGRES_URL"


def _postgres_url():
  """Returns the test database URL, or skips the test with the reason."""
  url = os.environ.get(URL_VARIABLE)
  if not url:
    pytest.skip(f"{URL_VARIABLE} is not set; start a server with `bash .ci/postgres.sh start` "
                "and set the variable to the URL it prints")
  parsed = sqlalchemy.engine.make_url(url)
  if parsed.drivername == "postgresql":
    parsed = parsed.set(drivername="postgresql+psycopg2")
  try:
    engine = sqlalchemy.create_engine(parsed, poolclass=sqlalchemy.pool.NullPool,
                                      connect_args={"connect_timeout": 5})
    with engine.connect():
      pass
  except (ImportError, sqlalchemy.exc.SQLAlchemyError) as error:
    pytest.skip(f"no PostgreSQL server is reachable at {parsed.render_as_string()} "
                f"({type(error).__name__}); start one with `bash .ci/postgres.sh start`")
  return url


def test_two_workers_share_postgres_study(tmp_path):
  url = _postgres_url()
  # A study name of its own, so a rerun against the same database starts afresh.
  test_search.check_two_workers(tmp_path, storage=url, study_name=f"test_{uuid.uuid4().hex[:12]}")
