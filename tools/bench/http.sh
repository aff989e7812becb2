#!/usr/bin/env bash
# HTTP API benchmark: lookups, a filtered list and a 1,000,000-row export on SQLite.
#
# What it measures, on a synthetic population of N customers with one vehicle each (default
# 1,000,000 × 7 days of summaries, `drivetag_server::store::synthetic`), labelled by the server:
#   - p50/p99 latency, requests/s and non-2xx/error counts with `oha` at C concurrent clients
#     (default 64) for D (default 20s) each, on
#       GET /api/v1/vehicles/{vin}              (random VINs of the population)
#       GET /api/v1/customers/{id}              (random customers)
#       GET /api/v1/customers/{id}/labels       (random customers: labels, evidence, actions)
#       GET /api/v1/customers?label=lifecycle=lost AND style=aggressive   (first page, 50)
#   - the CSV and NDJSON exports of every vehicle over HTTP (curl): rows, seconds, rows/s, and
#     the server's VmRSS sampled every 0.5 s (baseline before, peak during, and the peak over
#     the first and the last quarter of the samples: flat memory means they are alike);
#   - `drivetag-server export` from the shell: seconds, rows/s and its peak RSS (VmHWM).
# The load average is printed before each measurement: on a shared machine, measure again
# when it is high.
#
# Needs a built workspace and oha:
#   cargo build --release -p drivetag-server --bin drivetag-server --example relabel_bench
#   cargo install oha --locked
# Run from anywhere in the checkout:
#   tools/bench/http.sh                                   # 1,000,000 customers
#   CUSTOMERS=10000 DURATION=5s tools/bench/http.sh       # a quick try
# Variables: CUSTOMERS, DAYS, CONNECTIONS, DURATION, DIR (default /tmp/httpbench, deleted at
# the end unless KEEP=1; an existing DIR/drivetag.sqlite is reused), HTTP_PORT (18080),
# MQTT_PORT (18841, the embedded broker; 1883 is left alone).
#
# The per-key rate limit (http.rate_per_s, default 50 requests/s with bursts of 100) would
# turn a load test into a test of the limiter, so the benchmark's server allows 1,000,000/s.
# The server relabels everyone when it first starts on the population (the labeller's first
# pass is a full one unless the database records a full relabel with the same rules within
# `labels.full_every_h`); the script waits for the labels before it measures, so the
# population is generated without a relabel of its own (relabel_bench --runs 0). With KEEP=1
# a second run reuses DIR's labelled database and starts measuring at once.

set -euo pipefail
export NO_COLOR=1

CUSTOMERS=${CUSTOMERS:-1000000}
DAYS=${DAYS:-7}
CONNECTIONS=${CONNECTIONS:-64}
DURATION=${DURATION:-20s}
DIR=${DIR:-/tmp/httpbench}
KEEP=${KEEP:-0}
HTTP_PORT=${HTTP_PORT:-18080}
MQTT_PORT=${MQTT_PORT:-18841}

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/target/release
SERVER=$BIN/drivetag-server
for tool in "$SERVER" "$BIN/examples/relabel_bench"; do
    [[ -x $tool ]] || {
        echo "missing $tool: cargo build --release -p drivetag-server --bin drivetag-server --example relabel_bench" >&2
        exit 2
    }
done
command -v oha >/dev/null || { echo "missing oha: cargo install oha --locked" >&2; exit 2; }
command -v jq >/dev/null || { echo "missing jq" >&2; exit 2; }

mkdir -p "$DIR"
DB=$DIR/drivetag.sqlite
URL=sqlite://$DB
BASE=http://127.0.0.1:$HTTP_PORT
SERVER_PID=
SAMPLER_PID=

cleanup() {
    [[ -n $SAMPLER_PID ]] && kill "$SAMPLER_PID" 2>/dev/null || true
    if [[ -n $SERVER_PID ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ $KEEP == 1 ]]; then
        echo "kept $DIR"
    else
        rm -rf "$DIR"
    fi
}
trap cleanup EXIT

load() { echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"; }

# 2. The population.
if [[ ! -s $DB ]]; then
    echo "== population: $CUSTOMERS customers, $DAYS days"
    "$BIN/examples/relabel_bench" --customers "$CUSTOMERS" --days "$DAYS" --runs 0 --sqlite "$DB"
fi
echo "database: $(du -h "$DB" | cut -f1)"

# 3. The server, its configuration and an admin key.
cat >"$DIR/server.toml" <<EOF
[http]
listen = "127.0.0.1:$HTTP_PORT"
rate_per_s = 1000000

[mqtt]
embedded_listen = "127.0.0.1:$MQTT_PORT"
share_group = "httpbench"

[database]
url = "$URL"
EOF
KEY=$("$SERVER" keys create --config "$DIR/server.toml" --role admin --name bench 2>/dev/null)
AUTH="Authorization: Bearer $KEY"
"$SERVER" serve --config "$DIR/server.toml" >"$DIR/server.log" 2>&1 &
SERVER_PID=$!
echo "== server pid $SERVER_PID; waiting for its labels (a full relabel unless a kept DIR has one)"
started=$SECONDS
until grep -q 'Relabelled\|Labels come from a full relabel' "$DIR/server.log"; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        cat "$DIR/server.log" >&2
        exit 1
    fi
    sleep 5
done
echo "labels ready in $((SECONDS - started)) s: $(grep 'Relabelled\|Labels come from' "$DIR/server.log" | head -1 | sed 's/.*INFO [^ ]* //')"
# Random lookups read pages from all over the file: start with it in the page cache (the
# file is about 6 GB after the relabel), or the first route measures the disk.
cat "$DB" >/dev/null
curl -sf -H "$AUTH" "$BASE/api/v1/openapi.json" | jq -r '.paths | keys[]' | sed 's/^/route: /'

# 4. Lookups and a filtered list.
shuf -i "1-$CUSTOMERS" -n 100000 --random-source=<(yes) >"$DIR/ids"
awk -v base="$BASE" '{ printf "%s/api/v1/vehicles/SYN%014d\n", base, $1 }' "$DIR/ids" >"$DIR/vehicles.urls"
awk -v base="$BASE" '{ printf "%s/api/v1/customers/C%08d\n", base, $1 }' "$DIR/ids" >"$DIR/customers.urls"
awk -v base="$BASE" '{ printf "%s/api/v1/customers/C%08d/labels\n", base, $1 }' "$DIR/ids" >"$DIR/labels.urls"
FILTER='lifecycle%3Dlost%20AND%20style%3Daggressive'
echo "filter matches (vehicles): $(sqlite3 "$DB" "SELECT count(*) FROM vehicle_labels \
    WHERE ' ' || labels || ' ' LIKE '% lifecycle=lost %' AND ' ' || labels || ' ' LIKE '% style=aggressive %'")"

bench() { # name, then oha's target arguments
    local name=$1
    shift
    # Warm up, so the first run does not pay for a cold page cache alone.
    oha --no-tui -c "$CONNECTIONS" -z 3s -H "$AUTH" "$@" >/dev/null
    load
    oha --no-tui --output-format json -w -c "$CONNECTIONS" -z "$DURATION" -H "$AUTH" "$@" >"$DIR/$name.json"
    jq -r --arg name "$name" '"\($name): p50 \(.latencyPercentiles.p50 * 1000 | . * 100 | round / 100) ms, p99 \(.latencyPercentiles.p99 * 1000 | . * 100 | round / 100) ms, \(.summary.requestsPerSec | round) req/s, statuses \(.statusCodeDistribution | tojson), errors \(.errorDistribution | tojson)"' "$DIR/$name.json"
}
echo "== oha, $CONNECTIONS clients, $DURATION each"
bench vehicle --urls-from-file "$DIR/vehicles.urls"
bench customer --urls-from-file "$DIR/customers.urls"
bench customer-labels --urls-from-file "$DIR/labels.urls"
bench filtered-list "$BASE/api/v1/customers?label=$FILTER"

# 5. Exports, with the server's memory sampled every 0.5 s.
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$SERVER_PID/status"; }
export_http() { # format
    local format=$1 out=$DIR/export.$1
    load
    local baseline
    baseline=$(rss)
    (while sleep 0.5; do rss; done) >"$DIR/rss.$format" &
    SAMPLER_PID=$!
    local t0 t1
    t0=$(date +%s.%N)
    curl -sf -H "$AUTH" "$BASE/api/v1/exports/vehicles.$format" -o "$out"
    t1=$(date +%s.%N)
    kill "$SAMPLER_PID"
    wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=
    local rows lines
    lines=$(wc -l <"$out")
    rows=$([[ $format == csv ]] && echo $((lines - 1)) || echo "$lines")
    awk -v f="$format" -v rows="$rows" -v t0="$t0" -v t1="$t1" -v base="$baseline" -v bytes="$(stat -c %s "$out")" '
        { s[NR] = $1; if ($1 > peak) peak = $1 }
        END {
            q = int(NR / 4); if (q < 1) q = 1
            for (i = 1; i <= q; i++) if (s[i] > first) first = s[i]
            for (i = NR - q + 1; i <= NR; i++) if (s[i] > last) last = s[i]
            printf "export %s over HTTP: %d rows, %.1f MB in %.2f s = %.0f rows/s; server RSS baseline %.0f MB, peak %.0f MB (first quarter %.0f MB, last quarter %.0f MB, %d samples)\n",
                f, rows, bytes / 1e6, t1 - t0, rows / (t1 - t0), base / 1024, peak / 1024, first / 1024, last / 1024, NR
        }' "$DIR/rss.$format"
    [[ $format == csv ]] && echo "header: $(head -1 "$out")"
    rm -f "$out"
}
echo "== exports"
export_http csv
export_http ndjson

kill "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=
load
/usr/bin/time -f '%e s, peak RSS %M KB' -o "$DIR/cli.time" \
    "$SERVER" export --database "$URL" >"$DIR/export.cli.csv" 2>"$DIR/cli.err"
rows=$(($(wc -l <"$DIR/export.cli.csv") - 1))
echo "drivetag-server export: $rows rows, $(cat "$DIR/cli.time"), $(tail -1 "$DIR/cli.err")"
rm -f "$DIR/export.cli.csv"
