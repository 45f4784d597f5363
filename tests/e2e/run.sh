#!/usr/bin/env bash
# make e2e: a real BitTorrent client (python3-libtorrent) against the release
# build on loopback. Installs the client from Debian if it is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! /usr/bin/python3 -c 'import libtorrent' 2>/dev/null; then
    echo "e2e: installing python3-libtorrent"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq python3-libtorrent >/dev/null
fi

work=$(mktemp -d)
log="$work/tracker.log"
cleanup() {
    if [ -n "${pid:-}" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# The tracker's log goes through a FIFO so we can block on its first lines
# (no polling, no sleeping) and keep the rest in a file.
mkfifo "$work/log.fifo"
./target/release/ringtracker --udp 127.0.0.1:0 --workers 2 2>"$work/log.fifo" &
pid=$!
exec 3<"$work/log.fifo"
port=""
while IFS= read -r -u 3 line; do
    echo "$line" >>"$log"
    case "$line" in
        *"listening on udp 127.0.0.1:"*) port=${line##*127.0.0.1:}; break ;;
    esac
done
[ -n "$port" ] || { cat "$log"; echo "e2e: tracker exited before listening"; exit 1; }
cat <&3 >>"$log" &
echo "e2e: tracker on udp 127.0.0.1:$port"

timeout 300 /usr/bin/python3 tests/e2e/libtorrent_swarm.py 127.0.0.1 "$port" "$work"
kill -TERM "$pid"
wait "$pid"
pid=""
grep -q "stopped" "$log" || { cat "$log"; echo "e2e: tracker did not stop cleanly"; exit 1; }
echo "e2e: 1 passed, 0 failed"
