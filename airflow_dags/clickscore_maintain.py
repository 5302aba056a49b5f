"""clickscore_maintain: the weekly housekeeping of the data root.

One task, `maintain` (`clickscore maintain`): compaction of the Delta tables where many small
files pay for it, VACUUM with the retention (`params.retention`, 30 days by default: time
travel and `score --reproduce` keep working for runs within it), and pruning of old
validation results and Data Docs pages, finished training runs' checkpoints, caches killed
runs left and model versions nothing uses. Saturdays at 12:00 UTC: away from the nightly
scores and the Sunday training, since OPTIMIZE and VACUUM rewrite and delete files those read.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param
from airflow.timetables.interval import CronDataIntervalTimetable
from clickscore_common import TAGS, default_args, stage, start_date

with DAG(
    dag_id="clickscore_maintain",
    description="compact, VACUUM and prune the data root",
    schedule=CronDataIntervalTimetable("0 12 * * 6", timezone="UTC"),  # Saturdays 12:00
    start_date=start_date("2019-10-05"),
    catchup=False,  # only the latest week matters
    max_active_runs=1,
    default_args=default_args("clickscore"),
    tags=[*TAGS, "maintenance"],
    params={"retention": Param("30d", type="string",
                               description="what stays readable (time travel, --reproduce)")},
    doc_md=__doc__,
) as dag:
    stage("maintain", "maintain", ["--run-date", "{{ ds }}",
                                   "--retention", "{{ params.retention }}"])
