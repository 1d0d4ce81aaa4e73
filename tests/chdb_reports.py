"""The reports on a current ClickHouse engine, in process (chdb-core from PyPI, no server).

Applies Runnel's schema as `runnel schema --server <chdb's version>` prints it (so the
statements guarded for newer servers run too), loads raw rows through the raw tables (so the
materialized views fill as in production), runs each report query and prints its TabSeparated
output as JSON. tests/reports.rs compares that with what the local 18.16 server answered.

Usage: chdb_reports.py SCHEMA.json DATA_DIR QUERIES.json
  DATA_DIR holds <table>.tsv for each raw table; QUERIES.json maps names to SQL.
"""

import json
import os
import sys
import tempfile

from chdb import session


def main() -> None:
    schema_path, data_dir, queries_path = sys.argv[1:4]
    with open(schema_path) as f:
        schema = json.load(f)
    with open(queries_path) as f:
        queries = json.load(f)
    with tempfile.TemporaryDirectory() as path:
        s = session.Session(path)
        for statement in schema:
            try:
                s.query(statement)
            except Exception as error:  # name the statement that a current server refuses
                sys.exit(f"schema statement refused by chdb {engine_version(s)}: {error}\n{statement}")
        for name in sorted(os.listdir(data_dir)):
            table = name.removesuffix(".tsv")
            columns = s.query(f"SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = '{table}' ORDER BY position", "TabSeparated").bytes().decode()
            structure = ", ".join(f"`{c}` {t}" for c, t in (line.split("\t") for line in columns.splitlines()))
            file = os.path.join(data_dir, name)
            s.query(f"INSERT INTO {table} SELECT * FROM file('{file}', 'TabSeparated', '{structure}')")
        results = {}
        for name, sql in queries.items():
            try:
                results[name] = s.query(sql, "TabSeparated").bytes().decode()
            except Exception as error:
                sys.exit(f"report {name} failed on chdb {engine_version(s)}: {error}\n{sql}")
        print(json.dumps({"version": engine_version(s), "results": results}))


def engine_version(s) -> str:
    return s.query("SELECT version()", "TabSeparated").bytes().decode().strip()


if __name__ == "__main__":
    main()
