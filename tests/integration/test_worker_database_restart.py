"""A worker's database engine does not pre-ping (a round trip per transaction saved): a connection
that died with a database restart fails its next statement instead. These tests show what the
render task relies on: that failure says the connection was invalidated, SQLAlchemy has dropped
the pool, and the very next try works on a fresh connection and finishes the render."""

import psycopg
import pytest
from sqlalchemy.exc import OperationalError

from farm.context import FarmContext, prepare_database
from farm.db.models import Render
from farm.db.session import transaction
from farm.jobs.execution import Outcome, execute_render
from farm.jobs.service import JobRequest, submit_job
from farm.campaigns.service import adhoc_campaign
from farm.queue.runtime import build_worker_context
from farm.settings import load_settings
from farm.templates.service import create_template

pytestmark = pytest.mark.integration


def _terminate_other_connections(postgres_admin_url: str, database: str) -> int:
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        return len(conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,)).fetchall())


def test_a_worker_survives_its_connections_dying(farm_home, postgres_url, postgres_admin_url):
    settings = load_settings({"FARM_HOME": str(farm_home), "FARM_DATABASE_URL": postgres_url})
    farm = FarmContext(settings)
    prepare_database(farm)
    with transaction(farm.session_factory) as session:
        version = create_template(session, name="t", body="{{ p }}", default_params={"steps": 2, "width": 64, "height": 64})
        job = submit_job(session, JobRequest(campaign_id=adhoc_campaign(session).id, template_version_id=version.id,
                                             model_name="tiny-sd", variable_rows=[{"p": "a red cube"}], seeds=[1, 2]))
        first, second = (render.id for render in job.renders)
    farm.db_engine.dispose()

    worker = build_worker_context(settings, worker_name="box:0")
    assert execute_render(worker, first) is Outcome.SUCCEEDED  # the pool now holds a live connection
    assert _terminate_other_connections(postgres_admin_url, postgres_url.rsplit("/", 1)[1]) >= 1

    with pytest.raises(OperationalError) as failure:
        execute_render(worker, second)
    assert failure.value.connection_invalidated  # what makes the task try again at once
    assert execute_render(worker, second) is Outcome.SUCCEEDED
    with transaction(worker.session_factory) as session:
        assert session.get(Render, second).state == "succeeded"
