#!/bin/bash
# Full scrape size and time, plain vs gzipped (issue 23): the tracker with
# full_scrape on and one worker on CPU 0, filled by loadgen (--mode once) on
# CPU 1 with TORRENTS and PEERS, then three plain and three gzip requests.
#   loadgen/full_scrape_gzip.sh TORRENTS PEERS   (after make build)
set -e
N=$1; P=$2
cd "$(dirname "$0")/.."
work=$(mktemp -d)
cfg=$work/c.toml
printf '[udp]\nlisten = ["127.0.0.1:6969"]\n[http]\nlisten = ["127.0.0.1:6990"]\nfull_scrape = true\n' > $cfg
taskset -c 0 ./target/release/ringtracker --workers 1 --config $cfg 2>/dev/null &
pid=$!
until ss -ltn | grep -q ":6990 "; do sleep 0.05; done
taskset -c 1 ./target/release/loadgen --cpu 1 --torrents $N --peers $P --mode once --duration 600 --json > /dev/null
for i in 1 2 3; do
  curl -s -o $work/plain.bin -w "plain %{size_download} bytes %{time_total}s\n" http://127.0.0.1:6990/scrape
  curl -s -H "Accept-Encoding: gzip" -o $work/gz.bin -w "gzip  %{size_download} bytes %{time_total}s\n" http://127.0.0.1:6990/scrape
done
python3 -c "
import gzip;p=open('$work/plain.bin','rb').read();g=open('$work/gz.bin','rb').read()
print('ratio %.2f, decodes equal: %s' % (len(p)/len(g), gzip.decompress(g)==p))"
kill $pid; wait $pid 2>/dev/null || true; rm -rf "$work"
