#!/usr/bin/env bash
# Times `essctl up` from nothing (images present) and a no-op `essctl up`, beside
# docker-compose (Debian's docker-compose 1.29) on the equivalent file from
# `essctl export compose`. Every service but the router is the ess-standin TEST STAND-IN,
# so nothing is pulled; the same readers and ports as tests/orchestrator_docker.rs.
#
#   benches/essctl-up.sh [READERS] [ROUNDS]      # defaults: 3 readers, 3 rounds
#   ESSCTL=target/x86_64-unknown-linux-gnu/debug/essctl benches/essctl-up.sh
#
# Needs a Docker daemon, the images of scripts/build-images.sh and docker-compose. Results
# (seconds, median of the rounds) go to stdout; progress to stderr. Everything it creates is
# named essbench-<pid>-* and removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
readers="${1:-3}"
rounds="${2:-3}"
command -v docker-compose >/dev/null || { echo "essctl-up: error: docker-compose not found (apt-get install docker-compose)" >&2; exit 1; }
docker image inspect ess-standin:test ess-router:dev >/dev/null 2>&1 ||
  { echo "essctl-up: error: run scripts/build-images.sh first" >&2; exit 1; }

# The dev build: its dependencies are optimised (root Cargo.toml) and essctl's own time is
# small beside the daemon's; the release profile's fat LTO takes many minutes on two cores.
# ESSCTL=path uses a binary built already (the tests' static one, say).
if [ -n "${ESSCTL:-}" ]; then
  essctl="$ESSCTL"
else
  echo "essctl-up: building essctl" >&2
  cargo build --quiet -p essctl
  target_dir="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
  essctl="$target_dir/debug/essctl"
fi

work="$(mktemp -d)"
ours="essbench-$$-essctl"
theirs="essbench-$$-compose"
front="essbench-$$-front"
cleanup() {
  "$essctl" down --volumes --project "$ours" >/dev/null 2>&1 || true
  docker-compose -p "$theirs" -f "$work/compose.yaml" down --volumes >/dev/null 2>&1 || true
  docker network rm "$front" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

s=ess-standin:test
cat > "$work/deployment.yaml" <<YAML
server_name: example.com
hosts: {synapse: matrix.example.com, mas: account.example.com, element_web: chat.example.com, element_admin: admin.example.com, matrix_rtc: mrtc.example.com}
images: {postgres: $s, redis: $s, synapse: $s, federation_reader: $s, mas: $s, element_web: $s, element_admin: $s, livekit: $s, lk_jwt: $s, router: ess-router:dev}
synapse: {federation_readers: $readers}
front_proxy: {network: $front}
YAML
cat > "$work/overrides.yaml" <<'YAML'
services:
  postgres: {command: [--name, "{name}", --listen, "0.0.0.0:5432"], readiness: {http: {port: 5432, path: /health}}}
  redis: {command: [--name, "{name}", --listen, "0.0.0.0:6379"], readiness: {tcp: {port: 6379}}}
  synapse: {command: [--name, "{name}", --listen, "0.0.0.0:8008", --listen, "0.0.0.0:9093", --health-listen, "0.0.0.0:8080"]}
  federation_reader: {command: [--name, "{name}", --listen, "0.0.0.0:8008", --health-listen, "0.0.0.0:8080"]}
  mas: {command: [--name, "{name}", --listen, "0.0.0.0:8080", --health-listen, "0.0.0.0:8081"]}
  mas-migrate: {command: [--version]}
  element_web: {command: [--name, "{name}", --listen, "0.0.0.0:8080"]}
  element_admin: {command: [--name, "{name}", --listen, "0.0.0.0:8080"]}
  livekit: {command: [--name, "{name}", --listen, "0.0.0.0:7880"], publish: [{port: 30001, host_ip: 127.0.0.1, host_port: 0}, {port: 30002, protocol: udp, host_ip: 127.0.0.1, host_port: 0}]}
  lk_jwt: {command: [--name, "{name}", --listen, "0.0.0.0:8080"]}
  router: {publish: [{port: 8008, host_ip: 127.0.0.1, host_port: 0}]}
YAML
"$essctl" secrets --config "$work/deployment.yaml" >/dev/null
docker network create "$front" >/dev/null
args=(--config "$work/deployment.yaml" --overrides "$work/overrides.yaml")
"$essctl" export compose "${args[@]}" --project "$theirs" > "$work/compose.yaml"
# The compose project renders into its own directory: write it once.
"$essctl" up "${args[@]}" --project "$theirs" --pull never >/dev/null 2>&1
"$essctl" down --project "$theirs" >/dev/null

seconds() { # command...: wall time in seconds
  local start end
  start="$(date +%s.%N)"
  "$@" >/dev/null 2>&1
  end="$(date +%s.%N)"
  echo "$end - $start" | bc
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -a ec_cold ec_noop dc_cold dc_noop
for round in $(seq 1 "$rounds"); do
  echo "essctl-up: round $round/$rounds" >&2
  ec_cold+=("$(seconds "$essctl" up "${args[@]}" --project "$ours" --pull never)")
  ec_noop+=("$(seconds "$essctl" up "${args[@]}" --project "$ours" --pull never)")
  "$essctl" down --volumes --project "$ours" >/dev/null
  dc_cold+=("$(seconds docker-compose -p "$theirs" -f "$work/compose.yaml" up -d)")
  dc_noop+=("$(seconds docker-compose -p "$theirs" -f "$work/compose.yaml" up -d)")
  docker-compose -p "$theirs" -f "$work/compose.yaml" down --volumes >/dev/null 2>&1
done

services=$(( 8 + readers + (readers > 0 ? 1 : 0) ))
echo "containers: $services ($readers federation readers), rounds: $rounds, median seconds"
printf '%-34s %8s %8s\n' "" "cold up" "no-op up"
printf '%-34s %8.2f %8.2f\n' "essctl up (waits for readiness)" \
  "$(printf '%s\n' "${ec_cold[@]}" | median)" "$(printf '%s\n' "${ec_noop[@]}" | median)"
printf '%-34s %8.2f %8.2f\n' "docker-compose up -d (no readiness)" \
  "$(printf '%s\n' "${dc_cold[@]}" | median)" "$(printf '%s\n' "${dc_noop[@]}" | median)"
