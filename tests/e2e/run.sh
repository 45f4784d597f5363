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

# Start a tracker (extra flags in "$@") and read its UDP and HTTP ports (and
# the HTTP port on [::1], with `--http [::1]:0` among the flags) from
# its log. The log goes through a FIFO so we block on its first lines (no
# polling, no sleeping) and keep the rest in the log file.
start_tracker() {
    local fifo="$work/log.$RANDOM.fifo" line
    mkfifo "$fifo"
    ./target/release/ringtracker --udp 127.0.0.1:0 --http 127.0.0.1:0 "$@" --workers 2 --metrics 127.0.0.1:0 2>"$fifo" &
    pid=$!
    exec 3<"$fifo"
    udp_port=""
    http_port=""
    http6_port=""
    metrics_port=""
    local want6=""
    case " $* " in *" [::1]:0 "*) want6=1 ;; esac
    while IFS= read -r -u 3 line; do
        echo "$line" >>"$log"
        case "$line" in
            *"listening on udp 127.0.0.1:"*) udp_port=${line##*127.0.0.1:} ;;
            *"listening on http 127.0.0.1:"*) http_port=${line##*127.0.0.1:} ;;
            *"listening on http [::1]:"*) http6_port=${line##*\]:} ;;
            *"metrics on http://127.0.0.1:"*) metrics_port=${line##*127.0.0.1:}; metrics_port=${metrics_port%%/*} ;;
        esac
        [ -n "$udp_port" ] && [ -n "$http_port" ] && [ -n "$metrics_port" ] && { [ -z "$want6" ] || [ -n "$http6_port" ]; } && break
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

# Dual stack: a seeder known over IPv6 and a leecher known over IPv4 meet
# over HTTP. Every scrape body is gzipped here (gzip_min_bytes = 0), so
# libtorrent's own scrape at the end reads a gzip answer.
printf '[http]\ngzip_min_bytes = 0\n' >"$work/gzip.toml"
start_tracker --http "[::1]:0" --config "$work/gzip.toml"
mkdir "$work/dual"
timeout 300 /usr/bin/python3 tests/e2e/libtorrent_swarm.py "http://[::1]:$http6_port/announce" "$work/dual" dual "http://127.0.0.1:$http_port/announce"
gzipped=$(curl -s "http://127.0.0.1:$metrics_port/metrics" | awk '/^ringtracker_http_gzip_responses_total/ {print $2}')
[ "${gzipped:-0}" -ge 1 ] || { cat "$log"; echo "e2e: libtorrent's scrape was not answered gzipped"; exit 1; }
echo "e2e: libtorrent read $gzipped gzipped scrape answer(s)"
stop_tracker

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
echo "e2e: 5 passed, 0 failed"
