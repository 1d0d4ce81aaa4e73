"""A retried INSERT on a current ClickHouse engine, in process (chdb-core from PyPI).

Applies Runnel's schema as `runnel schema --server <version>` prints it, adds a view on
`clicks` that throws, inserts ten clicks (refused: the view throws), drops the view and sends
the same INSERT again, as the processor retries a batch. Prints, as JSON, how many of the ten
each table holds: the raw table, the fence, and report tables the views fill.

Usage: chdb_retry.py SCHEMA.json SETTINGS.json
  SETTINGS.json: [[name, value], ...] the INSERT carries (empty: none).
"""

import json
import sys
import tempfile

from chdb import session

COUNTS = {
    "raw": "SELECT count() FROM clicks",
    "fence": "SELECT maxMerge(max_offset) FROM kafka_offsets WHERE source = 'clicks'",
    "clicks_daily_by_link": "SELECT countMerge(clicks) FROM clicks_daily_by_link",
    "link_clicks_daily": "SELECT sum(clicks) FROM link_clicks_daily",
    "dimension_clicks_hourly": "SELECT sum(clicks) FROM dimension_clicks_hourly WHERE dimension = 'country'",
    "click_links": "SELECT count() FROM click_links",
}


def main() -> None:
    with open(sys.argv[1]) as f:
        schema = json.load(f)
    with open(sys.argv[2]) as f:
        settings = json.load(f)
    with tempfile.TemporaryDirectory() as path:
        s = session.Session(path)
        for statement in schema:
            s.query(statement)
        s.query(
            "CREATE MATERIALIZED VIEW zz_throws ENGINE = MergeTree ORDER BY tuple() AS "
            "SELECT throwIf(event_id > 0, 'a broken view') AS x FROM clicks"
        )
        clause = ""
        if settings:
            clause = " SETTINGS " + ", ".join(f"{name} = '{value}'" for name, value in settings)
        insert = (
            "INSERT INTO clicks (event_id, ts, link_id, code, country, kafka_partition, kafka_offset)"
            f"{clause} SELECT number + 1, 1763800000, 7, 'abc', 'DE', 0, 10 + number FROM numbers(10)"
        )
        try:
            s.query(insert)
            sys.exit("the first INSERT was expected to fail (its view throws)")
        except Exception as error:
            if "a broken view" not in str(error):
                raise
        s.query("DROP TABLE zz_throws")
        s.query(insert)
        counts = {name: int(s.query(sql, "TabSeparated").bytes().decode().strip()) for name, sql in COUNTS.items()}
        version = s.query("SELECT version()", "TabSeparated").bytes().decode().strip()
        print(json.dumps({"version": version, "counts": counts}))


if __name__ == "__main__":
    main()
