#!/usr/bin/env bash
# Scale benchmark: a simulated fleet through the real system, Mosquitto into PostgreSQL.
#
# What it measures, for N vehicles × D days (default 10,000 × 7, seed 1):
#   - wall time of `drivetag-sim drive` (one real agent per vehicle: NMEA and signals →
#     pipeline → SQLite outbox → MQTT → server ingest → PostgreSQL, every summary acknowledged);
#   - envelopes stored, their payload bytes, messages per second;
#   - bytes per vehicle-day on the wire (payload, and an estimate of the MQTT PUBLISH packets
#     with topic and header) against the raw NMEA the agents read, i.e. the compression ratio;
#   - the server's peak RSS (VmHWM at the end, and the largest VmRSS sampled during the run),
#     its CPU time, the simulator's peak RSS, the database size;
#   - the time of a full relabel (`drivetag-server relabel`, run after the server has stopped);
#   - exactly-once delivery: every device's stored sequence numbers are 1..n without a gap,
#     and there are N devices.
#
# How to run it, from anywhere in the checkout (Mosquitto on 127.0.0.1:1883 and PostgreSQL
# on 127.0.0.1:5432 with trust auth and a database `test`, as the test suite expects):
#   tools/scale/scale.sh                                      # 10,000 × 7, seed 1
#   tools/scale/scale.sh --vehicles 200 --days 2              # a quick try
#   VEHICLES=1000 DAYS=7 CONCURRENCY=16 tools/scale/scale.sh  # the same with variables
# Flags (each also an environment variable): --vehicles N (VEHICLES), --days D (DAYS),
# --seed S (SEED), --concurrency C (CONCURRENCY; default: the simulator's, four per core),
# --keep-schema (KEEP_SCHEMA=1: keep the PostgreSQL schema for a look afterwards),
# --mqtt URL (MQTT_URL), --pg-host/--pg-port/--pg-user/--pg-db (PG_HOST, PG_PORT, PG_USER, PG_DB).
#
# Each run uses a fresh schema `scale_<timestamp>` in the database and a unique MQTT share group
# and client id, so it can share the broker and the database with other runs and tests. The
# devices are `scale-sim-00000` and up; the agents keep persistent MQTT sessions, so before and
# after driving the script clears those sessions and their retained messages on the broker (a
# stale acknowledgement from an earlier run would otherwise delete a new summary from a fresh
# outbox). Full runs take 10–30 minutes on two cores; progress is printed every 5 s.

set -euo pipefail
# Plain log lines, to count warnings.
export NO_COLOR=1

VEHICLES=${VEHICLES:-10000}
DAYS=${DAYS:-7}
SEED=${SEED:-1}
CONCURRENCY=${CONCURRENCY:-}
KEEP_SCHEMA=${KEEP_SCHEMA:-0}
MQTT_URL=${MQTT_URL:-mqtt://127.0.0.1:1883}
PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
PG_USER=${PG_USER:-postgres}
PG_DB=${PG_DB:-test}
PREFIX=scale-

usage() {
    sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while (($#)); do
    case $1 in
        --vehicles) VEHICLES=$2; shift 2 ;;
        --days) DAYS=$2; shift 2 ;;
        --seed) SEED=$2; shift 2 ;;
        --concurrency) CONCURRENCY=$2; shift 2 ;;
        --keep-schema) KEEP_SCHEMA=1; shift ;;
        --mqtt) MQTT_URL=$2; shift 2 ;;
        --pg-host) PG_HOST=$2; shift 2 ;;
        --pg-port) PG_PORT=$2; shift 2 ;;
        --pg-user) PG_USER=$2; shift 2 ;;
        --pg-db) PG_DB=$2; shift 2 ;;
        -h | --help) usage 0 ;;
        *) echo "scale.sh: unknown argument $1" >&2; usage 2 ;;
    esac
done

for n in "$VEHICLES" "$DAYS" "$SEED"; do
    [[ $n =~ ^[0-9]+$ ]] || { echo "scale.sh: not a number: $n" >&2; exit 2; }
done
[[ -z $CONCURRENCY || $CONCURRENCY =~ ^[1-9][0-9]*$ ]] ||
    { echo "scale.sh: --concurrency must be a positive number" >&2; exit 2; }
[[ $MQTT_URL =~ ^mqtt://([^:/]+):([0-9]+)$ ]] ||
    { echo "scale.sh: --mqtt must look like mqtt://host:port" >&2; exit 2; }
MQTT_HOST=${BASH_REMATCH[1]}
MQTT_PORT=${BASH_REMATCH[2]}

for tool in cargo psql curl mosquitto_sub /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "scale.sh: needs $tool" >&2; exit 2; }
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
SERVER=$ROOT/target/release/drivetag-server
SIM=$ROOT/target/release/drivetag-sim

RUN_ID=$(date -u +%Y%m%d_%H%M%S)_$$
SCHEMA=scale_$RUN_ID
SHARE_GROUP=scale-$RUN_ID
CLIENT_ID=drivetag-server-scale-$RUN_ID
DATABASE_URL="postgres://$PG_USER@$PG_HOST:$PG_PORT/$PG_DB?options=-csearch_path%3D$SCHEMA"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/drivetag-scale.XXXXXX")
CONFIG=$WORK/server.toml
SERVER_PID=
SAMPLER_PID=
SCHEMA_CREATED=0

log() { printf '[scale %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.3f", b - a}'; }
psql_q() { psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" -v ON_ERROR_STOP=1 -Atq -F ' ' "$@"; }

# Forgets the fleet on the broker: each agent's persistent session (by connecting once with a
# clean session under its client id) and the retained config and status messages of its
# topics. Other clients' sessions and topics are left alone.
forget_fleet_on_broker() {
    local devices=$WORK/devices.txt
    [[ -s $devices ]] || return 0
    xargs -P 8 -I '{}' mosquitto_sub -h "$MQTT_HOST" -p "$MQTT_PORT" -i '{}' \
        -t 'drivetag/v1/{}/ack' -E <"$devices" || true
    # Hundreds of topics per client; --remove-retained clears each retained message it gets.
    sed 's|.*|-t\ndrivetag/v1/&/config\n-t\ndrivetag/v1/&/status|' "$devices" |
        xargs -d '\n' -n 1000 -P 4 mosquitto_sub -h "$MQTT_HOST" -p "$MQTT_PORT" \
            --remove-retained --retained-only -W 3 >/dev/null 2>&1 || true
}

# The server's session holds a subscription to every uplink: left behind, the broker would
# queue other fleets' messages for it.
forget_server_on_broker() {
    mosquitto_sub -h "$MQTT_HOST" -p "$MQTT_PORT" -i "$CLIENT_ID" -t 'drivetag/scale/none' -E \
        >/dev/null 2>&1 || true
}

stop_server() {
    if [[ -n $SAMPLER_PID ]]; then
        kill "$SAMPLER_PID" 2>/dev/null || true
        wait "$SAMPLER_PID" 2>/dev/null || true
        SAMPLER_PID=
    fi
    if [[ -n $SERVER_PID ]]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 150); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}

cleanup() {
    local status=$?
    set +e
    stop_server
    forget_server_on_broker
    forget_fleet_on_broker
    if ((SCHEMA_CREATED)); then
        if ((KEEP_SCHEMA)); then
            log "kept schema $SCHEMA (drop it with: psql -h $PG_HOST -U $PG_USER -d $PG_DB -c 'DROP SCHEMA $SCHEMA CASCADE')"
        else
            psql_q -c "SET client_min_messages = warning; DROP SCHEMA IF EXISTS $SCHEMA CASCADE" && log "dropped schema $SCHEMA"
        fi
    fi
    if ((status != 0)); then
        for file in import.err server.err drive.err relabel.err; do
            [[ -s $WORK/$file ]] || continue
            log "failed; the last lines of $file:"
            grep -v ' INFO ' "$WORK/$file" | tail -n 20 >&2
        done
    fi
    [[ -s $WORK/sys.err ]] && cat "$WORK/sys.err"
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "run $RUN_ID: $VEHICLES vehicles × $DAYS days, seed $SEED, broker $MQTT_URL, schema $SCHEMA"

log "building release binaries"
cargo build --release -p drivetag-server -p drivetag-sim
CODE=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
[[ -z $(git status --porcelain -- agent server sim shared 2>/dev/null) ]] || CODE+=" + uncommitted changes"

psql_q -c "CREATE SCHEMA $SCHEMA"
SCHEMA_CREATED=1

cat >"$CONFIG" <<EOF
# Written by tools/scale/scale.sh for run $RUN_ID.
[http]
# Port 0: the system picks a free port; the server prints the one it got.
listen = "127.0.0.1:0"

[mqtt]
url = "$MQTT_URL"
client_id = "$CLIENT_ID"
share_group = "$SHARE_GROUP"

[database]
url = "$DATABASE_URL"

[agents]
time_zone = "Asia/Shanghai"
EOF
"$SERVER" --config "$CONFIG" check-config >/dev/null

FLEET=(--vehicles "$VEHICLES" --days "$DAYS" --seed "$SEED" --prefix "$PREFIX")

log "writing and importing the dealer CSVs"
"$SIM" generate "${FLEET[@]}" --dealer-only --out "$WORK/sim"
for kind in stores pois fleets customers vehicles service_visits campaign_responses; do
    "$SERVER" --config "$CONFIG" import "$kind" "$WORK/sim/dealer/$kind.csv" 2>>"$WORK/import.err" |
        grep -v '^agent configuration' | sed 's/^/  /'
done
tail -n +2 "$WORK/sim/dealer/vehicles.csv" | cut -d, -f2 >"$WORK/devices.txt"
[[ $(wc -l <"$WORK/devices.txt") -eq $VEHICLES ]] ||
    { echo "scale.sh: vehicles.csv does not hold $VEHICLES devices" >&2; exit 1; }

started=$(now)
forget_fleet_on_broker
BROKER_CLEAR_S=$(since "$started")
log "cleared the fleet's sessions and retained messages on the broker in ${BROKER_CLEAR_S%.*} s"

log "starting the server"
"$SERVER" --config "$CONFIG" serve >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
HTTP=
for _ in $(seq 1 600); do
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "scale.sh: the server exited" >&2; exit 1; }
    HTTP=$(sed -n 's|^drivetag-server listening: http://\([^ ]*\) .*|\1|p' "$WORK/server.out")
    [[ -n $HTTP ]] && curl -fsS "http://$HTTP/healthz" >/dev/null 2>&1 && break
    HTTP=
    sleep 0.1
done
[[ -n $HTTP ]] || { echo "scale.sh: the server did not become healthy in 60 s" >&2; exit 1; }
log "server $SERVER_PID healthy at http://$HTTP"

# Server memory (VmRSS, kB) and the database's size, every 2 s.
(
    while kill -0 "$SERVER_PID" 2>/dev/null; do
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null || true)
        [[ -n $rss ]] && echo "$(date +%s) $rss" >>"$WORK/rss.log"
        sleep 2
    done
) &
SAMPLER_PID=$!

dropped() {
    timeout 20 mosquitto_sub -h "$MQTT_HOST" -p "$MQTT_PORT" -C 1 -W 11 \
        -t '$SYS/broker/publish/messages/dropped' 2>>"$WORK/sys.err" || echo "?"
}
DROPPED_BEFORE=$(dropped)

DRIVE=("$SIM" drive "${FLEET[@]}" --broker "$MQTT_URL" --outboxes "$WORK/outboxes")
[[ -n $CONCURRENCY ]] && DRIVE+=(--concurrency "$CONCURRENCY")
log "driving: ${DRIVE[*]#"$ROOT/"}"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(now)
set +e
/usr/bin/time -v -o "$WORK/drive.time" "${DRIVE[@]}" 2>"$WORK/drive.err" | tee "$WORK/drive.out"
DRIVE_STATUS=${PIPESTATUS[0]}
set -e
WALL_S=$(since "$started")
log "drive finished in ${WALL_S%.*} s with status $DRIVE_STATUS"
OUTBOX_BYTES=$(du -sb "$WORK/outboxes" | cut -f1)
OUTBOX_FILES=$(find "$WORK/outboxes" -type f | wc -l)

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
DROPPED_AFTER=$(dropped)
HWM_KB=$(awk '/^VmHWM:/ {print $2}' "/proc/$SERVER_PID/status")
CPU_S=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$SERVER_PID/stat")
curl -fsS "http://$HTTP/metrics" >"$WORK/metrics.txt"
metric() { awk -v name="$1" '$1 == name {sum += $2; found = 1} END {print found ? sum : "?"}' "$WORK/metrics.txt"; }
# Dead letters are labelled by reason: sum them all.
DEAD=$(awk '$1 ~ /^drivetag_dead_letters_total/ {sum += $2} END {print sum + 0}' "$WORK/metrics.txt")
STORED_METRIC=$(metric drivetag_envelopes_stored_total)
DUPLICATES=$(metric drivetag_envelopes_duplicate_total)
STORE_ERRORS=$(metric drivetag_store_errors_total)
BATCH_SUM=$(metric drivetag_ingest_batch_size_sum)
BATCH_COUNT=$(metric drivetag_ingest_batch_size_count)
log "stopping the server"
stop_server
MAX_RSS_KB=$(awk '$2 > max {max = $2} END {print max + 0}' "$WORK/rss.log")
SAMPLES=$(wc -l <"$WORK/rss.log")

SERVER_WARNINGS=$(grep -c -E ' (WARN|ERROR) ' "$WORK/server.err" || true)
DRIVE_WARNINGS=$(grep -c -E ' (WARN|ERROR) ' "$WORK/drive.err" || true)
LABEL_PASSES=$(grep -c 'Relabelled\.' "$WORK/server.err" || true)
SIM_RSS_KB=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/drive.time")

# "delivered 200/200 vehicles in 12.3 s: 1.2 M fixes (0.10 M/s), 123 MB of NMEA
#  (0.31 MB per vehicle-day), 0 failed"
FINAL=$(grep '^delivered ' "$WORK/drive.out" | tail -n 1 || true)
[[ -n $FINAL ]] || { echo "scale.sh: the drive printed no final line" >&2; exit 1; }
read -r DELIVERED FIXES_M NMEA_MB NMEA_VD_MB FAILED < <(
    sed -E 's|^delivered ([0-9]+)/[0-9]+ vehicles in [0-9.]+ s: ([0-9.]+) M fixes \([0-9.]+ M/s\), ([0-9.]+) MB of NMEA \(([0-9.]+) MB per vehicle-day\), ([0-9]+) failed.*|\1 \2 \3 \4 \5|' <<<"$FINAL"
)

log "querying $SCHEMA"
# Every server on a broker gets every uplink (topics name no deployment), so envelopes of
# other fleets on the same broker, e.g. a test run, land here too: count only ours.
OURS="device_id LIKE '${PREFIX}%'"
read -r FOREIGN FOREIGN_DEVICES < <(psql_q -c "
    SELECT COUNT(*), COUNT(DISTINCT device_id) FROM $SCHEMA.envelopes WHERE NOT ($OURS)")
read -r ENVELOPES PAYLOAD_BYTES PUBLISH_BYTES < <(psql_q -c "
    SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0),
           -- MQTT 3.1.1 PUBLISH, QoS 1: fixed header (1 byte + remaining length), topic length
           -- (2) and topic, packet id (2), payload. PUBACKs, TCP and IP not counted.
           COALESCE(SUM(1 + CASE WHEN r < 128 THEN 1 WHEN r < 16384 THEN 2 ELSE 3 END + r), 0)
    FROM (SELECT payload,
                 2 + OCTET_LENGTH('drivetag/v1/' || device_id || '/up/' || kind) + 2
                   + LENGTH(payload) AS r
          FROM $SCHEMA.envelopes WHERE $OURS) e")
read -r DEVICES GAPPY < <(psql_q -c "
    SELECT COUNT(*), COUNT(*) FILTER (WHERE m <> c OR lo <> 1)
    FROM (SELECT device_id, MIN(seq) lo, MAX(seq) m, COUNT(*) c
          FROM $SCHEMA.envelopes WHERE $OURS GROUP BY device_id) x")
KINDS=$(psql_q -c "
    SELECT kind, COUNT(*), ROUND(AVG(LENGTH(payload)), 1)
    FROM $SCHEMA.envelopes WHERE $OURS GROUP BY kind ORDER BY kind")
DB_BYTES=$(psql_q -c "
    SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = '$SCHEMA' AND c.relkind IN ('r', 'm')")
DB_DEAD=$(psql_q -c "SELECT COUNT(*) FROM $SCHEMA.dead_letters")

log "full relabel"
started=$(now)
"$SERVER" --config "$CONFIG" relabel >"$WORK/relabel.out" 2>"$WORK/relabel.err"
RELABEL_WALL_S=$(since "$started")
RELABEL_LINE=$(tail -n 1 "$WORK/relabel.out")

VEHICLE_DAYS=$((VEHICLES * DAYS))
# The drive prints NMEA megabytes rounded, in all (to 1 MB) and per vehicle-day (to 0.01 MB):
# take whichever is the more precise.
NMEA_VD=$(awk -v all="$NMEA_MB" -v vd="$NMEA_VD_MB" -v n="$VEHICLE_DAYS" \
    'BEGIN {printf "%.0f", (0.5 / all < 0.005 / vd) ? all * 1e6 / n : vd * 1e6}')
calc() { awk "BEGIN {printf \"$1\", $2}"; }
EXACTLY_ONCE=FAIL
((DEVICES == VEHICLES && GAPPY == 0 && DRIVE_STATUS == 0)) && EXACTLY_ONCE=PASS

row() { printf '  %-44s %s\n' "$1" "$2"; }
echo
echo "drivetag scale benchmark, run $RUN_ID ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores)"
row "code (at build time)" "$CODE"
row "load average before / after driving" "$LOAD_BEFORE / $LOAD_AFTER"
row "fleet" "$VEHICLES vehicles × $DAYS days = $VEHICLE_DAYS vehicle-days, seed $SEED"
row "concurrency (agents at a time)" "${CONCURRENCY:-default: $((4 * $(nproc)))}"
row "drive wall time" "$(calc '%.1f s (%.1f min)' "$WALL_S, $WALL_S / 60")"
row "vehicles delivered / failed" "$DELIVERED / $FAILED (exit status $DRIVE_STATUS)"
row "GPS fixes read" "$FIXES_M M ($(calc '%.2f M/s' "$FIXES_M / $WALL_S"))"
row "envelopes stored" "$ENVELOPES ($(calc '%.1f' "$ENVELOPES / $VEHICLE_DAYS") per vehicle-day)"
row "messages/s (envelopes / wall time)" "$(calc '%.1f' "$ENVELOPES / $WALL_S")"
row "payload bytes" "$PAYLOAD_BYTES ($(calc '%.1f' "$PAYLOAD_BYTES / $ENVELOPES") per envelope)"
row "payload bytes per vehicle-day" "$(calc '%.0f' "$PAYLOAD_BYTES / $VEHICLE_DAYS")"
row "MQTT PUBLISH bytes per vehicle-day (est.)" "$(calc '%.0f' "$PUBLISH_BYTES / $VEHICLE_DAYS") (payload + topic + header)"
row "NMEA bytes per vehicle-day (drive output)" "$NMEA_VD ($NMEA_MB MB in all, $NMEA_VD_MB MB per vehicle-day)"
row "compression ratio, NMEA : payload" "$(calc '%.0f : 1' "$NMEA_VD * $VEHICLE_DAYS / $PAYLOAD_BYTES")"
row "compression ratio, NMEA : MQTT PUBLISH" "$(calc '%.0f : 1' "$NMEA_VD * $VEHICLE_DAYS / $PUBLISH_BYTES")"
row "server peak RSS (VmHWM at the end)" "$(calc '%.1f MB' "$HWM_KB / 1024")"
row "server max VmRSS sampled every 2 s" "$(calc '%.1f MB' "$MAX_RSS_KB / 1024") ($SAMPLES samples)"
row "server CPU time (user + system)" "$CPU_S s"
row "simulator peak RSS" "$(calc '%.1f MB' "$SIM_RSS_KB / 1024")"
row "agents' outboxes left on disk" "$(calc '%.1f MB' "$OUTBOX_BYTES / 1048576") in $OUTBOX_FILES files"
row "database size (tables + indexes)" "$(calc '%.1f MB' "$DB_BYTES / 1048576") ($(calc '%.0f' "$DB_BYTES / $VEHICLE_DAYS") bytes per vehicle-day)"
row "full relabel" "$RELABEL_LINE (wall $(calc '%.1f' "$RELABEL_WALL_S") s)"
row "background relabel passes during the run" "$LABEL_PASSES"
row "exactly-once: devices with envelopes" "$DEVICES of $VEHICLES"
row "exactly-once: devices with a seq gap" "$GAPPY"
row "exactly-once" "$EXACTLY_ONCE"
row "server: stored / duplicates (metrics)" "$STORED_METRIC / $DUPLICATES (all fleets)"
row "other fleets' envelopes stored (not ours)" "$FOREIGN from $FOREIGN_DEVICES devices"
row "server: store errors / dead letters" "$STORE_ERRORS / $DEAD (table: $DB_DEAD)"
row "server: mean batch size" "$(calc '%.1f' "$BATCH_SUM / ($BATCH_COUNT + ($BATCH_COUNT == 0))") envelopes ($BATCH_COUNT batches)"
row "broker: messages dropped during the run" "$(calc '%.0f' "$DROPPED_AFTER - $DROPPED_BEFORE" 2>/dev/null || echo '?') (whole broker, all clients; \$SYS)"
row "warnings: server log / drive log" "$SERVER_WARNINGS / $DRIVE_WARNINGS"
echo "  envelopes by kind (count, mean payload bytes):"
sed 's/^/    /' <<<"$KINDS"
if ((SERVER_WARNINGS > 0)); then
    echo "  server warnings, by message (first 10 kinds):"
    grep -E ' (WARN|ERROR) ' "$WORK/server.err" | sed -E 's/^[^ ]+ +//; s/[0-9]+/N/g' | cut -c1-140 |
        sort | uniq -c | sort -rn | head -n 10 | sed 's/^/    /'
fi
if ((DRIVE_WARNINGS > 0)); then
    echo "  drive warnings, by message (first 10 kinds):"
    grep -E ' (WARN|ERROR) ' "$WORK/drive.err" | sed -E 's/^[^ ]+ +//; s/[0-9]+/N/g' | cut -c1-140 |
        sort | uniq -c | sort -rn | head -n 10 | sed 's/^/    /'
fi
echo
[[ $EXACTLY_ONCE == PASS ]]
