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

# Start a tracker (extra flags in "$@") and read its UDP and HTTP ports from
# its log. The log goes through a FIFO so we block on its first lines (no
# polling, no sleeping) and keep the rest in the log file.
start_tracker() {
    local fifo="$work/log.$RANDOM.fifo" line
    mkfifo "$fifo"
    ./target/release/ringtracker "$@" --udp 127.0.0.1:0 --http 127.0.0.1:0 --workers 2 --metrics 127.0.0.1:0 2>"$fifo" &
    pid=$!
    exec 3<"$fifo"
    udp_port=""
    http_port=""
    while IFS= read -r -u 3 line; do
        echo "$line" >>"$log"
        case "$line" in
            *"listening on udp 127.0.0.1:"*) udp_port=${line##*127.0.0.1:} ;;
            *"listening on http 127.0.0.1:"*) http_port=${line##*127.0.0.1:} ;;
        esac
        [ -n "$udp_port" ] && [ -n "$http_port" ] && break
    done
    [ -n "$udp_port" ] && [ -n "$http_port" ] || { cat "$log"; echo "e2e: tracker exited before listening"; exit 1; }
    cat <&3 >>"$log" &
    exec 3<&-
    echo "e2e: tracker on udp 127.0.0.1:$udp_port and http 127.0.0.1:$http_port"
}

stop_tracker() {
    kill -TERM "$pid"
    wait "$pid"
    pid=""
}

start_tracker
mkdir "$work/udp" "$work/http"
timeout 300 /usr/bin/python3 tests/e2e/libtorrent_swarm.py "udp://127.0.0.1:$udp_port/announce" "$work/udp"
timeout 300 /usr/bin/python3 tests/e2e/libtorrent_swarm.py "http://127.0.0.1:$http_port/announce" "$work/http"
stop_tracker
grep -q "stopped" "$log" || { cat "$log"; echo "e2e: tracker did not stop cleanly"; exit 1; }

# A private tracker: the same swarm through URLs carrying a passkey.
key=e2ePasskey0123456789
echo "$key" >"$work/passkeys.txt"
cat >"$work/private.toml" <<TOML
[private]
enabled = true
passkeys = "$work/passkeys.txt"
TOML
start_tracker --config "$work/private.toml"
mkdir "$work/pudp" "$work/phttp"
timeout 300 /usr/bin/python3 tests/e2e/libtorrent_swarm.py "udp://127.0.0.1:$udp_port/$key/announce" "$work/pudp" private
timeout 300 /usr/bin/python3 tests/e2e/libtorrent_swarm.py "http://127.0.0.1:$http_port/$key/announce" "$work/phttp" private
stop_tracker
echo "e2e: 4 passed, 0 failed"
