#!/usr/bin/env bash
# The long reliability runs (docs/reliability.md), beyond what CI runs:
#   - faults under a concurrent workload (Redis kill -9/restart, SIGSTOP,
#     pub/sub cut, PostgreSQL/MariaDB connections terminated);
#   - hostile HTTP input;
#   - Redis Cluster resharding/rebalancing and master failover (#[ignore]d
#     in CI: six redis-server processes);
#   - load and soak, 60 s a backend (CI runs 5 s);
#   - the fuzz targets, 60 s each (scripts/fuzz.sh).
#
#   scripts/reliability.sh                  # everything
#   SESSIONKIT_SOAK_SECS=300 scripts/reliability.sh soak
#   scripts/reliability.sh faults cluster   # some parts only
#
# Env: SESSIONKIT_SOAK_SECS (60), SESSIONKIT_SOAK_SESSIONS (10000),
# SESSIONKIT_SOAK_TASKS (64), SESSIONKIT_FAULT_SECS (5), FUZZ_SECONDS (60),
# PROFILE (--release; set PROFILE= for a debug build),
# SESSIONKIT_REQUIRE_SERVICES=1 to fail instead of skipping a missing server.
# Needs: redis-server/redis-cli on PATH, PostgreSQL and MariaDB on loopback
# (URLs: SESSIONKIT_POSTGRES_URL, SESSIONKIT_MYSQL_URL, SESSIONKIT_REDIS_URL).
set -euo pipefail
cd "$(dirname "$0")/.."

export SESSIONKIT_SOAK_SECS="${SESSIONKIT_SOAK_SECS:-60}"
export SESSIONKIT_FAULT_SECS="${SESSIONKIT_FAULT_SECS:-5}"
PROFILE="${PROFILE---release}"
parts=("$@")
[ "${#parts[@]}" -eq 0 ] && parts=(faults http cluster soak fuzz)

run() {
  local test="$1"; shift
  echo "=== $test $*"
  # shellcheck disable=SC2086
  cargo test $PROFILE -p sessionkit-integration-tests --test "$test" -- --nocapture "$@"
}

for part in "${parts[@]}"; do
  case "$part" in
    faults)  run reliability_faults --test-threads 1 ;;
    http)    run reliability_http ;;
    cluster) run reliability_cluster --include-ignored --test-threads 1 ;;
    soak)    run reliability_soak --test-threads 1 ;;
    fuzz)    scripts/fuzz.sh ;;
    *) echo "unknown part: $part (faults http cluster soak fuzz)" >&2; exit 2 ;;
  esac
done
