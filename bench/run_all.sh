#!/usr/bin/env bash
# Run every benchmark at the sizes recorded in BENCHMARKS.md; results go to bench/out/*.json.
# PostgreSQL runs use LABES_TEST_DATABASE_URL (default: the local "test" database), which is emptied first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p bench/out
work=${WORK:-/tmp/labes-bench}
for db in postgresql sqlite; do
  for n in 100000 1000000; do
    $PY bench/import_bench.py --members $n --db $db --workdir $work | tail -1 > bench/out/import-$db-$n.json
    $PY bench/lookup_bench.py --members $n --db $db --workdir $work --reuse | tail -1 > bench/out/lookup-$db-$n.json
  done
  $PY bench/cards_bench.py --cards 1000000 --db $db --workdir $work | tail -1 > bench/out/cards-$db-1000000.json
  for n in 100000 1000000; do
    # needs wrk (Debian package wrk) as the load generator
    $PY bench/poc_bench.py --members $n --db $db --workdir $work-poc-$n --seconds 20 | tail -1 > bench/out/poc-$db-$n.json
    for action in rights-check care-sheet; do  # CPU per request in one process, on the database poc_bench left
      $PY bench/poc_cpu.py --members $n --db $db --workdir $work-poc-$n --action $action | tail -1 > bench/out/poc-cpu-$action-$db-$n.json
    done
  done
done
cat bench/out/*.json
