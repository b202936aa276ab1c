#!/usr/bin/env bash
# Runs the sessionkit benchmark suite and writes docs/benchmarks.md and
# docs/benchmarks.svg.
#
#   scripts/bench.sh            # the full suite (~15 min on 2 cores)
#   scripts/bench.sh --quick    # short measurement times, small scale sizes
#   scripts/bench.sh --report   # only regenerate the report from the last run
#
# Servers: a private redis-server is started on a free loopback port for the
# run (unless REDIS_URL is set); PostgreSQL is DATABASE_URL (default
# postgres://postgres@127.0.0.1:5432/test), MariaDB / MySQL is MYSQL_URL
# (default mysql://root@127.0.0.1:3306/test). A missing server makes its
# groups print SKIPPED and leaves them out of the report.
#
# Environment knobs (defaults of the full run):
#   SESSIONKIT_BENCH_SCALE=1000,100000,1000000   live sessions for the scale rows
#   SESSIONKIT_BENCH_EXPIRED=1000,10000,100000   expired rows for delete_expired
#   SESSIONKIT_BENCH_LIVE=10000,100000           live rows beside them
#   SESSIONKIT_BENCH_FOOTPRINT_N=100000          sessions per memory measurement
#   BENCH_WARM_UP=0.5 BENCH_MEASURE=1.5          criterion seconds per benchmark
set -euo pipefail
cd "$(dirname "$0")/.."

mode=full
case "${1:-}" in
  --quick) mode=quick ;;
  --report) mode=report ;;
  "") ;;
  *) echo "usage: $0 [--quick|--report]" >&2; exit 2 ;;
esac

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
criterion_dir="$CARGO_TARGET_DIR/criterion"
env_json="$CARGO_TARGET_DIR/sessionkit-bench-env.json"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
export MYSQL_URL="${MYSQL_URL:-mysql://root@127.0.0.1:3306/test}"

if [ "$mode" = quick ]; then
  : "${SESSIONKIT_BENCH_SCALE:=1000,10000}"
  : "${SESSIONKIT_BENCH_EXPIRED:=1000,5000}"
  : "${SESSIONKIT_BENCH_LIVE:=5000}"
  : "${SESSIONKIT_BENCH_FOOTPRINT_N:=20000}"
  : "${BENCH_WARM_UP:=0.2}"
  : "${BENCH_MEASURE:=0.5}"
else
  : "${SESSIONKIT_BENCH_SCALE:=1000,100000,1000000}"
  : "${SESSIONKIT_BENCH_EXPIRED:=1000,10000,100000}"
  : "${SESSIONKIT_BENCH_LIVE:=10000,100000}"
  : "${SESSIONKIT_BENCH_FOOTPRINT_N:=100000}"
  : "${BENCH_WARM_UP:=0.5}"
  : "${BENCH_MEASURE:=1.5}"
fi
export SESSIONKIT_BENCH_SCALE SESSIONKIT_BENCH_EXPIRED SESSIONKIT_BENCH_LIVE SESSIONKIT_BENCH_FOOTPRINT_N

redis_pid=""
cleanup() {
  if [ -n "$redis_pid" ]; then
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

if [ "$mode" != report ]; then
  if [ -z "${REDIS_URL:-}" ] && command -v redis-server >/dev/null; then
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
      --maxmemory 0 --logfile "$CARGO_TARGET_DIR/bench-redis.log" --daemonize no &
    redis_pid=$!
    for _ in $(seq 50); do
      redis-cli -p "$port" ping >/dev/null 2>&1 && break
      sleep 0.1
    done
    export REDIS_URL="redis://127.0.0.1:$port"
    echo "bench: private redis-server at $REDIS_URL"
  fi
  export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"

  # Fresh results only: the report reads every estimate under $criterion_dir.
  rm -rf "$criterion_dir"
  start=$(date +%s)
  load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  cargo bench -p sessionkit-benches --no-fail-fast \
    --bench memory --bench redis --bench sql --bench jwt --bench footprint --bench secrets \
    -- --warm-up-time "$BENCH_WARM_UP" --measurement-time "$BENCH_MEASURE"
  took=$(( $(date +%s) - start ))
  load_after=$(cut -d' ' -f1-3 /proc/loadavg)
  echo "bench: suite took $took s (load average before: $load_before, after: $load_after)"

  # Machine and versions for the report.
  redis_version=$(redis-cli -u "$REDIS_URL" INFO server 2>/dev/null | tr -d '\r' | sed -n 's/^redis_version://p' || true)
  pg_version=$(psql "$DATABASE_URL" -tAc 'SHOW server_version' 2>/dev/null || true)
  # The mariadb client takes no URL: MYSQL_URL is split into its options.
  mysql_version=$(python3 - "$MYSQL_URL" 2>/dev/null <<'MYSQLV' || true
import os, shutil, subprocess, sys
from urllib.parse import unquote, urlsplit
u = urlsplit(sys.argv[1])
client = shutil.which("mariadb") or shutil.which("mysql")
if client:
    cmd = [client, "-N", "-B", "-h", u.hostname or "127.0.0.1", "-P", str(u.port or 3306),
           "-u", unquote(u.username or "root")]
    if u.path.strip("/"):
        cmd.append(unquote(u.path.strip("/")))
    env = dict(os.environ, MYSQL_PWD=unquote(u.password)) if u.password else None
    out = subprocess.run(cmd + ["-e", "SELECT VERSION()"], capture_output=True, text=True,
                         timeout=10, env=env)
    print(out.stdout.strip() if out.returncode == 0 else "")
MYSQLV
)
  LOAD_NOTE="suite took $took s; load average (1/5/15 min) before: $load_before, after: $load_after" \
  CRITERION_SETTINGS="warm-up ${BENCH_WARM_UP} s, measurement ${BENCH_MEASURE} s, 20 samples per benchmark" \
  REDIS_VERSION="$redis_version" PG_VERSION="$pg_version" MYSQL_VERSION="$mysql_version" \
  python3 - "$env_json" <<'EOF'
import json, os, platform, re, subprocess, sys, datetime, tomllib

def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    except Exception:
        return ""

cpu = ""
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
mem_kb = 0
for line in open("/proc/meminfo"):
    if line.startswith("MemTotal"):
        mem_kb = int(line.split()[1])
lock = tomllib.load(open("Cargo.lock", "rb"))
wanted = ["sessionkit", "redis", "sqlx", "moka", "jsonwebtoken", "tokio", "criterion",
          "tower-sessions", "tower-sessions-core", "tower-sessions-moka-store",
          "tower-sessions-redis-store", "tower-sessions-sqlx-store", "fred", "libsqlite3-sys",
          "bincode", "pasetors", "chacha20poly1305"]
crates = {}
for p in lock.get("package", []):
    if p["name"] in wanted:
        crates.setdefault(p["name"], [])
        crates[p["name"]].append(p["version"])
env = {
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "cpu": cpu,
    "nproc": sh("nproc"),
    "ram": f"{mem_kb / 1024 / 1024:.1f} GiB",
    "kernel": platform.release(),
    "rustc": sh("rustc", "-V"),
    "profile": "cargo bench (release, workspace defaults)",
    "criterion_settings": os.environ.get("CRITERION_SETTINGS", ""),
    "load": os.environ.get("LOAD_NOTE", ""),
    "redis_server": os.environ.get("REDIS_VERSION") or "unknown",
    "postgres_server": os.environ.get("PG_VERSION") or "unknown (psql not found)",
    "mariadb_server": os.environ.get("MYSQL_VERSION") or "unknown (no answer from the mariadb client)",
    "sqlite": "bundled by libsqlite3-sys " + ", ".join(crates.get("libsqlite3-sys", [])),
    "crates": {k: " / ".join(sorted(set(v))) for k, v in crates.items()},
    "note": "The machine is shared (2 cores, other builds may run at the same time): "
            "absolute times are noisy, ratios measured back to back are what to read.",
}
json.dump(env, open(sys.argv[1], "w"), indent=1)
EOF
fi

python3 scripts/bench_report.py --criterion "$criterion_dir" --env "$env_json" --out docs/benchmarks.md
