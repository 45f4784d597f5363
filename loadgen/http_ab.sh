#!/bin/bash
# HTTP A/B of two ringtracker binaries: HTTP only, one worker pinned to
# CPU 0, loadgen closed loop (256 in flight over 64 keep-alive connections)
# on CPU 1, alternated A B A B ... for ROUNDS rounds; prints each run's
# goodput and the server's CPU per reply.
#   loadgen/http_ab.sh OLD_BINARY NEW_BINARY [ROUNDS]   (after make build)
set -euo pipefail
A=$1; B=$2; ROUNDS=${3:-3}
L="$(dirname "$0")/../target/release/loadgen"
config=$(mktemp --suffix=.toml)
printf '[udp]\nlisten = []\n[http]\nlisten = ["127.0.0.1:6990"]\n' > "$config"
for _ in $(seq "$ROUNDS"); do
  for bin in "$A" "$B"; do
    taskset -c 0 "$bin" --workers 1 --config "$config" --metrics 127.0.0.1:0 2>/dev/null &
    pid=$!
    until ss -ltn | grep -q ":6990 "; do sleep 0.05; done
    taskset -c 1 "$L" --target 127.0.0.1:6990 --protocol http --mode closed --inflight 256 \
      --duration 8 --warmup 2 --torrents 100000 --peers 200000 --json --server-pid $pid \
      | python3 -c "import json,sys;r=json.load(sys.stdin);print('$bin', round(r['goodput_per_second']), round(r['server']['cpu_us_per_reply'],2))"
    kill $pid; wait $pid 2>/dev/null || true
  done
done
rm -f "$config"
