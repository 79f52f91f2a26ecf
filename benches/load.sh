#!/usr/bin/env bash
# benches/load.sh: load benchmark of HAProxy 2.6 configured like the matrix-stack chart
# against ess-router with the equivalent configuration, on loopback only. See
# benches/README.md for what it measures and how to read the result.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: benches/load.sh [--only haproxy]

Runs, in turns (A B A B), HAProxy and ess-router in front of ess-standin upstreams, with
1 and 2 worker threads, on three paths, plus the upstream alone as the ceiling and bare
Pingora (ess-bare-pingora: Pingora's proxy doing none of the router's work, one upstream)
as the floor of any router built on it. Prints a table and the router/HAProxy and
bare-Pingora/HAProxy ratios, and writes them to target/bench-load/results.md.

  --only haproxy   measure HAProxy and the upstream only (while the router is not ready)

Environment (defaults in brackets):
  DURATION [10s] WARMUP [2s] CONNECTIONS [64] WRK_THREADS [1] ROUNDS [2]
  THREADS ["1 2"] UPSTREAM_THREADS [1] PORT_BASE [24000]
  BIN [target/release] OUT [target/bench-load]

Build first: cargo build --release -p ess-router -p ess-standin -p ess-suite
EOF
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BIN:-$ROOT/target/release}
OUT=${OUT:-$ROOT/target/bench-load}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-1}
ROUNDS=${ROUNDS:-2}
THREADS=${THREADS:-1 2}
UPSTREAM_THREADS=${UPSTREAM_THREADS:-1}
PORT_BASE=${PORT_BASE:-24000}

TARGETS=(haproxy router pingora)
case "${1:-}" in
  "") ;;
  --only)
    [[ "${2:-}" == haproxy ]] || { usage >&2; exit 2; }
    TARGETS=(haproxy)
    ;;
  -h | --help) usage; exit 0 ;;
  *) usage >&2; exit 2 ;;
esac

fail() {
  echo "load.sh: error: $*" >&2
  exit 1
}

# Every worker type the chart knows, so the route table is the full one.
POOLS=(main account-data client-reader device-lists encryption event-creator
  federation-inbound federation-reader initial-synchrotron mas-helper media-repository
  presence-writer push-rules receipts sliding-sync sso-login synchrotron typing-persister
  user-dir)

# name|pool that must answer|path. The first regex of the whole table (account-data's
# `.*/tags`); the fourth pool of the table, balanced on the whole URI; and a path no regex
# matches, which HAProxy only knows after trying all of them.
PATHS=(
  "first-match|account-data|/_matrix/client/v3/user/@a:x/rooms/!r:x/tags"
  'federation-reader|federation-reader|/_matrix/federation/v1/state_ids/!room:x?event_id=$e'
  "no-match|main|/_matrix/client/v3/rooms/!r:x/upgrade"
)

# Ports: the proxy's five listeners from PORT_BASE; pool i gets two server ports and a
# health port from PORT_BASE+100+3i.
port_of() { # listener-index
  echo $((PORT_BASE + $1))
}
pool_port() { # pool-index slot(0: server, 1: second server, 2: health)
  echo $((PORT_BASE + 100 + 3 * $1 + $2))
}
pool_index() { # pool-name
  local i
  for i in "${!POOLS[@]}"; do
    [[ "${POOLS[$i]}" == "$1" ]] && { echo "$i"; return; }
  done
  fail "unknown pool $1"
}

# --- preconditions -------------------------------------------------------------------

command -v haproxy >/dev/null || fail "haproxy not found (apt-get install haproxy)"
command -v wrk >/dev/null || fail "wrk not found (apt-get install wrk)"
command -v curl >/dev/null || fail "curl not found (apt-get install curl)"
for bin in ess-standin ess-haproxy-config; do
  [[ -x "$BIN/$bin" ]] ||
    fail "$BIN/$bin is missing; build with: cargo build --release -p ess-router -p ess-standin -p ess-suite"
done
if [[ " ${TARGETS[*]} " == *" pingora "* ]]; then
  [[ -x "$BIN/ess-bare-pingora" ]] ||
    fail "$BIN/ess-bare-pingora is missing; build with: cargo build --release -p ess-router -p ess-standin -p ess-suite"
fi
if [[ " ${TARGETS[*]} " == *" router "* ]]; then
  [[ -x "$BIN/ess-router" ]] ||
    fail "$BIN/ess-router is missing; build it (cargo build --release -p ess-router), or measure HAProxy alone with --only haproxy"
  "$BIN/ess-router" --help 2>/dev/null | grep -qw run ||
    fail "$BIN/ess-router has no 'run' command yet; measure HAProxy alone with --only haproxy"
fi

WORK=$OUT/run
rm -rf "$WORK"
mkdir -p "$WORK"
RAW=$OUT/raw.tsv
: >"$RAW"
CLK_TCK=$(getconf CLK_TCK)

# Only processes this script started, by pid.
STANDIN_PIDS=()
PROXY_PID=
cleanup() {
  local pid
  for pid in "${STANDIN_PIDS[@]}" $PROXY_PID; do
    kill "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT

wait_http() { # url expected-status what log
  local i status
  for i in $(seq 1 200); do
    status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$1" || true)
    [[ "$status" == "$2" ]] && return 0
    sleep 0.1
  done
  echo "--- $4" >&2
  tail -n 20 "$4" >&2 || true
  fail "$3: $1 did not answer $2 within 20 s"
}

stop() { # pid
  kill -TERM "$1" 2>/dev/null || true
  local i
  for i in $(seq 1 50); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# --- upstreams: one stand-in process per pool ----------------------------------------

declare -A STANDIN_PID
for i in "${!POOLS[@]}"; do
  pool=${POOLS[$i]}
  args=(--name "$pool" --threads "$UPSTREAM_THREADS" --fixed-body
    --listen "127.0.0.1:$(pool_port "$i" 0)" --health-listen "127.0.0.1:$(pool_port "$i" 2)")
  # Two servers where the balance mode has something to choose between.
  [[ "$pool" == federation-reader ]] && args+=(--listen "127.0.0.1:$(pool_port "$i" 1)")
  "$BIN/ess-standin" "${args[@]}" 2>"$WORK/standin-$pool.log" &
  STANDIN_PID[$pool]=$!
  STANDIN_PIDS+=($!)
done
for i in "${!POOLS[@]}"; do
  wait_http "http://127.0.0.1:$(pool_port "$i" 2)/health" 200 \
    "stand-in ${POOLS[$i]}" "$WORK/standin-${POOLS[$i]}.log"
done

# --- configurations: one router file per thread count, HAProxy's rendered from it ------

router_config() { # threads
  local i pool servers
  cat <<EOF
# Written by benches/load.sh. HAProxy's configuration is rendered from this file.
listeners:
  synapse: "127.0.0.1:$(port_of 0)"
  blackhole: "127.0.0.1:$(port_of 1)"
  well_known: "127.0.0.1:$(port_of 2)"
  metrics: "127.0.0.1:$(port_of 3)"
  startup: "127.0.0.1:$(port_of 4)"
threads: $1
shutdown:
  grace_period: 0s
  drain_timeout: 1s
synapse:
  pools:
EOF
  for i in "${!POOLS[@]}"; do
    pool=${POOLS[$i]}
    servers="\"127.0.0.1:$(pool_port "$i" 0)\""
    [[ "$pool" == federation-reader ]] && servers+=", \"127.0.0.1:$(pool_port "$i" 1)\""
    cat <<EOF
    $pool:
      servers: [$servers]
      health_check: {port: $(pool_port "$i" 2)}
EOF
  done
}

for t in $THREADS; do
  router_config "$t" >"$WORK/router-$t.yaml"
  "$BIN/ess-haproxy-config" --config "$WORK/router-$t.yaml" --out "$WORK/haproxy-$t" 2>/dev/null ||
    fail "ess-haproxy-config failed on $WORK/router-$t.yaml"
  haproxy -c -q -f "$WORK/haproxy-$t/haproxy.cfg" ||
    fail "haproxy rejects $WORK/haproxy-$t/haproxy.cfg"
  if [[ " ${TARGETS[*]} " == *" router "* ]]; then
    "$BIN/ess-router" check --config "$WORK/router-$t.yaml" >/dev/null ||
      fail "ess-router rejects $WORK/router-$t.yaml"
  fi
done

# --- the proxies -----------------------------------------------------------------------

start_proxy() { # target threads [upstream-port ready-url]
  local log=$WORK/$1-$2.log
  case $1 in
    pingora)
      "$BIN/ess-bare-pingora" --listen "127.0.0.1:$(port_of 0)" \
        --upstream "127.0.0.1:$3" --threads "$2" >/dev/null 2>"$log" &
      PROXY_PID=$!
      wait_http "$4" 200 "bare Pingora with $2 threads" "$log"
      return
      ;;
    haproxy)
      # -db: foreground, one process (nbthread threads); the access log goes to stdout.
      haproxy -db -f "$WORK/haproxy-$2/haproxy.cfg" >/dev/null 2>"$log" &
      ;;
    router)
      "$BIN/ess-router" run --config "$WORK/router-$2.yaml" \
        --pid-file "$WORK/router.pid" --upgrade-sock "$WORK/router-upgrade.sock" \
        >/dev/null 2>"$log" &
      ;;
  esac
  PROXY_PID=$!
  # Ready: every required pool has a live server after the first health checks.
  wait_http "http://127.0.0.1:$(port_of 4)/synapse_ready" 200 "$1 with $2 threads" "$log"
}

# --- one measurement -------------------------------------------------------------------

cpu_ticks() { # pid: utime + stime
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}

measure() { # round target threads path-name expected-pool url pid
  local round=$1 target=$2 threads=$3 name=$4 want=$5 url=$6 pid=$7
  local body result cpu0 cpu1 hwm cpu_s requests seconds p50 p99 bad errors

  body=$(curl -s --max-time 5 "$url" || true)
  [[ "$body" == "{\"server\":\"$want\"}" ]] ||
    fail "$target: $url was answered by '$body', expected the $want pool"

  wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$WARMUP" "$url" >/dev/null
  # Reset the peak RSS so that VmHWM covers this run only.
  echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true
  cpu0=$(cpu_ticks "$pid")
  result=$(wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" \
    -s "$ROOT/benches/wrk-report.lua" "$url" | awk '$1 == "ESS-WRK"')
  cpu1=$(cpu_ticks "$pid")
  hwm=$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$pid/status")
  [[ -n "$result" ]] || fail "$target: wrk printed no result for $url"

  read -r _ requests seconds p50 p99 bad errors <<<"$result"
  cpu_s=$(awk -v t=$((cpu1 - cpu0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')
  printf '%s\t' "$round" "$target" "$threads" "$name" "$requests" "$seconds" "$p50" "$p99" \
    "$bad" "$errors" "$hwm" >>"$RAW"
  printf '%s\n' "$cpu_s" >>"$RAW"
  awk -v r="$requests" -v s="$seconds" -v t="$target $threads $name" -v p50="$p50" \
    -v p99="$p99" -v cpu="$cpu_s" -v rss="$hwm" 'BEGIN {
      printf "  %-30s %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms  cpu %5.2f s  rss %6.1f MiB\n",
        t, r / s, p50 / 1000, p99 / 1000, cpu, rss / 1024 }' >&2
}

# Every path through `$1` (a proxy port, or "upstream" for each pool's own stand-in).
run_paths() { # round target threads pid port|upstream
  local entry name want path port
  for entry in "${PATHS[@]}"; do
    IFS='|' read -r name want path <<<"$entry"
    port=$5
    [[ "$port" == upstream ]] && port=$(pool_port "$(pool_index "$want")" 0)
    measure "$1" "$2" "$3" "$name" "$want" "http://127.0.0.1:$port$path" \
      "${4:-${STANDIN_PID[$want]}}"
  done
}

# Bare Pingora has one upstream: restarted for each path with that path's pool as it.
run_floor() { # round threads
  local entry name want path port url
  for entry in "${PATHS[@]}"; do
    IFS='|' read -r name want path <<<"$entry"
    port=$(pool_port "$(pool_index "$want")" 0)
    url="http://127.0.0.1:$(port_of 0)$path"
    start_proxy pingora "$2" "$port" "$url"
    measure "$1" pingora "$2" "$name" "$want" "$url" "$PROXY_PID"
    stop "$PROXY_PID"
    PROXY_PID=
  done
}

echo "load.sh: $(nproc) cores, loadavg $(cut -d' ' -f1-3 /proc/loadavg);" \
  "wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS rounds" >&2
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round: upstream alone" >&2
  run_paths "$round" upstream "$UPSTREAM_THREADS" "" upstream
  for t in $THREADS; do
    for target in "${TARGETS[@]}"; do
      echo "round $round: $target, $t threads" >&2
      if [[ $target == pingora ]]; then
        run_floor "$round" "$t"
        continue
      fi
      start_proxy "$target" "$t"
      run_paths "$round" "$target" "$t" "$PROXY_PID" "$(port_of 0)"
      stop "$PROXY_PID"
      PROXY_PID=
    done
  done
done
echo "load.sh: loadavg at the end $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# --- report ----------------------------------------------------------------------------

report() {
  echo "## Load benchmark, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "$(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo))," \
    "Linux $(uname -r); $(haproxy -v | head -n 1 | cut -d' ' -f1-3);" \
    "$(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2);" \
    "wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION after a $WARMUP warm-up, $ROUNDS rounds" \
    "(means shown); upstream: ess-standin --fixed-body --threads $UPSTREAM_THREADS."
  echo "RSS is the peak during the run (VmHWM), CPU the proxy's user+system time over the run."
  echo
  awk -F'\t' -v targets="${TARGETS[*]}" '
    # One table of target / HAProxy per thread count and path.
    function ratios(target, title,    i, k, f, h) {
      print ""
      print title
      print ""
      print "| threads | path | req/s | p50 | p99 | RSS | CPU µs/req |"
      print "|---|---|---:|---:|---:|---:|---:|"
      for (i = 1; i <= keys; i++) {
        k = order[i]; split(k, f, SUBSEP)
        if (f[1] != target) continue
        h = "haproxy" SUBSEP f[2] SUBSEP f[3]
        if (!(h in n)) continue
        printf "| %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f |\n", f[2], f[3],
          rps[k] / rps[h], (p50[k] / n[k]) / (p50[h] / n[h]),
          (p99[k] / n[k]) / (p99[h] / n[h]), (rss[k] / n[k]) / (rss[h] / n[h]), us[k] / us[h]
      }
    }
    {
      key = $2 SUBSEP $3 SUBSEP $4
      if (!(key in n)) order[++keys] = key
      n[key]++; req[key] += $5; sec[key] += $6; p50[key] += $7; p99[key] += $8
      bad[key] += $9 + $10; rss[key] += $11; cpu[key] += $12
    }
    END {
      print "| target | threads | path | req/s | p50 ms | p99 ms | RSS MiB | CPU s | CPU µs/req | errors |"
      print "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"
      for (i = 1; i <= keys; i++) {
        k = order[i]; split(k, f, SUBSEP)
        rps[k] = req[k] / sec[k]
        us[k] = cpu[k] * 1e6 / req[k]
        printf "| %s | %s | %s | %.0f | %.2f | %.2f | %.1f | %.2f | %.1f | %d |\n",
          f[1], f[2], f[3], rps[k], p50[k] / n[k] / 1000, p99[k] / n[k] / 1000,
          rss[k] / n[k] / 1024, cpu[k] / n[k], us[k], bad[k]
      }
      if (targets !~ /router/) {
        print ""
        print "ess-router was not measured (--only haproxy): no ratios."
        exit
      }
      ratios("router", "Router / HAProxy (below 1 is better for the router, except req/s):")
      if (targets !~ /pingora/) exit
      ratios("pingora", "Bare Pingora / HAProxy (the floor: the Pingora proxy doing none of the router work):")
    }' "$RAW"
}

report | tee "$OUT/results.md"
if awk -F'\t' '$9 + $10 > 0 { found = 1 } END { exit !found }' "$RAW"; then
  fail "some requests failed (errors column): the figures above are not comparable"
fi
