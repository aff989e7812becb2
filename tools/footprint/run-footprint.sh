#!/usr/bin/env bash
# The agent's footprint while it runs: size of the head-unit binary, and peak RSS and CPU of
# `drivetag-agent run` on a 1 Hz NMEA drive replayed at its recorded speed, its summaries going
# through the SQLite outbox to a real MQTT broker. Figures and cross-build steps:
# tools/footprint/README.md.
#
#   tools/footprint/run-footprint.sh                    # the whole Munich drive (~32 min)
#   tools/footprint/run-footprint.sh --duration 300     # stop after 5 min of driving
#   tools/footprint/run-footprint.sh --gps drive.nmea   # another recording (1 Hz, no long gaps)
#   tools/footprint/run-footprint.sh --server           # with a server that acknowledges
#   tools/footprint/run-footprint.sh --profile release  # the default release build, to compare
#   tools/footprint/run-footprint.sh --cross            # also cross-build for aarch64 and armv7
#
# By default the agent talks to the Mosquitto at --broker (default mqtt://127.0.0.1:1883) and no
# server of ours listens: summaries wait in the outbox (unless some other drivetag-server on that
# broker takes them). --server starts drivetag-server with its embedded broker on a free local
# port and points the agent there instead, so the whole store-and-forward loop (send, ack,
# delete) runs without touching the devices of anyone else sharing the Mosquitto: a server on a
# shared broker ingests every device's uplink and publishes retained configurations to them.
#
# Options: --gps FILE, --time-zone IANA (default Europe/Berlin), --duration S (stop after S s
# even if the drive goes on), --interval S (sampling period, default 5), --tail S (keep sampling
# this long after the drive has ended, default 30), --broker URL, --server, --cross, --keep
# (keep the temp dir with the samples and logs), --profile NAME (the agent's Cargo profile,
# default head-unit, which the size target is meant for). Builds run under `nice -n 10`.
# The recorded drive is taken from
# ${DRIVETAG_DATA_DIR:-<checkout>/../shared/data}/munich-2009-04-01.nmea; without it,
# drivetag-sim generates a week for one car and the first continuous drive (>= 5 min) is cut
# out of it.
#
# Needs: cargo, a broker at --broker (anonymous), Linux /proc, getconf, strip (binutils);
# sqlite3 and mosquitto_sub are used when present (outbox rows, messages on the wire).
# Exit status 1 when a target is missed: stripped binary <= 8 MB, peak RSS <= 15 MB, average
# CPU <= 1 % of one core. MB is 10^6 bytes (the stricter reading; /proc's "kB" are KiB).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
data_dir="${DRIVETAG_DATA_DIR:-$root/../shared/data}"

gps=""
time_zone=""
duration=0
interval=5
tail_s=30
broker="mqtt://127.0.0.1:1883"
with_server=0
cross=0
keep=0
profile=head-unit
while (($#)); do
    case "$1" in
        --gps) gps="$2"; shift 2 ;;
        --time-zone) time_zone="$2"; shift 2 ;;
        --duration) duration="$2"; shift 2 ;;
        --interval) interval="$2"; shift 2 ;;
        --tail) tail_s="$2"; shift 2 ;;
        --broker) broker="$2"; shift 2 ;;
        --server) with_server=1; shift ;;
        --cross) cross=1; shift ;;
        --keep) keep=1; shift ;;
        --profile) profile="$2"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "run-footprint: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

# Targets (issue "agent store-and-forward uplink").
readonly TARGET_BINARY_BYTES=$((8 * 1000 * 1000))
readonly TARGET_RSS_BYTES=$((15 * 1000 * 1000))
readonly TARGET_CPU_PCT=1

log() { echo "run-footprint: $*" >&2; }
build() { (cd "$root" && nice -n 10 cargo build --quiet "$@"); }
mb() { awk -v b="$1" 'BEGIN { printf "%.2f MB (%.2f MiB)", b / 1e6, b / 1048576 }'; }

work="$(mktemp -d "${TMPDIR:-/tmp}/drivetag-footprint.XXXXXX")"
device="footprint-$$"
agent_pid=""
server_pid=""
sub_pid=""
broker_host_port="${broker#mqtt://}"
broker_host="${broker_host_port%:*}"
broker_port="${broker_host_port##*:}"

cleanup() {
    local pid
    for pid in "$agent_pid" "$server_pid" "$sub_pid"; do
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    # On a shared broker the agent's status (and any server's config for it) stay retained:
    # clear them. The embedded broker of --server is gone with the server.
    if ((!with_server)) && command -v mosquitto_pub >/dev/null; then
        for channel in status config; do
            mosquitto_pub -h "$broker_host" -p "$broker_port" -r -n \
                -t "drivetag/v1/$device/$channel" 2>/dev/null || true
        done
    fi
    if ((keep)); then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
# 1. The size-optimised binary.

log "building the agent with Cargo profile $profile (head-unit: opt-level z, fat LTO, 1 codegen unit, strip, panic abort)"
build --profile "$profile" -p drivetag-agent
case "$profile" in
    dev) built="$target_dir/debug/drivetag-agent" ;;
    *) built="$target_dir/$profile/drivetag-agent" ;;
esac
# Run a copy, so a rebuild during the run cannot swap the binary under it.
agent_bin="$work/drivetag-agent"
cp "$built" "$agent_bin"
strip -o "$work/drivetag-agent.stripped" "$agent_bin"
size_bytes=$(stat -c %s "$agent_bin")
stripped_bytes=$(stat -c %s "$work/drivetag-agent.stripped")
profile_strips="$(sed -n "/^\\[profile.$profile\\]/,/^\\[/p" "$root/Cargo.toml" | grep -E '^strip' || echo 'strip not set')"

# ---------------------------------------------------------------------------------------------
# 2. A 1 Hz drive.

if [[ -z "$gps" && -f "$data_dir/munich-2009-04-01.nmea" ]]; then
    gps="$(realpath "$data_dir/munich-2009-04-01.nmea")"
    time_zone="${time_zone:-Europe/Berlin}"
fi
if [[ -z "$gps" ]]; then
    log "no recorded drive in $data_dir: generating one with drivetag-sim"
    build --release -p drivetag-sim
    "$target_dir/release/drivetag-sim" generate --vehicles 1 --days 7 --out "$work/sim" >/dev/null
    gps="$work/drive.nmea"
    # The receiver is off while the car is parked: keep the first run of RMC times without a
    # gap over 5 s that lasts at least 5 minutes (days roll over at most once inside a drive).
    awk -F, '
        function flush() { if (n && last - first >= 300) { printf "%s", buf; done = 1; exit } buf = ""; n = 0 }
        /^\$G.RMC,/ {
            if ($10 != date) { if (date != "") day += 86400; date = $10 }
            t = day + substr($2, 1, 2) * 3600 + substr($2, 3, 2) * 60 + substr($2, 5, 2)
            if (n && t - last > 5) flush()
            if (!n) first = t
            last = t; n++
        }
        { buf = buf $0 "\n" }
        END { if (!done) flush() }' "$work/sim/nmea/sim-00000.nmea" >"$gps"
    [[ -s "$gps" ]] || { log "drivetag-sim made no drive of 5 minutes"; exit 1; }
    time_zone="${time_zone:-$(sed -n 's/^time_zone = "\(.*\)"/\1/p' "$work/sim/agents/sim-00000.toml" | head -1)}"
fi
time_zone="${time_zone:-UTC}"
rmc_lines=$(grep -c '^\$G.RMC' "$gps" || true)
drive_span="$(grep '^\$G.RMC' "$gps" | awk -F, 'NR == 1 { f = $2 } { l = $2 } END { print substr(f,1,2) ":" substr(f,3,2) ":" substr(f,5,2) "-" substr(l,1,2) ":" substr(l,3,2) ":" substr(l,5,2) " UTC" }')"

# ---------------------------------------------------------------------------------------------
# 3. The run.

if ((with_server)); then
    log "building drivetag-server"
    build --release -p drivetag-server
    # Its embedded broker on a free port: this run's messages stay between these two processes.
    for attempt in 1 2 3 4 5; do
        port=$((20000 + RANDOM % 40000))
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then continue; fi
        cat >"$work/server.toml" <<EOF
[http]
listen = "127.0.0.1:0"
[mqtt]
url = ""
embedded_listen = "127.0.0.1:$port"
[database]
url = "sqlite://$work/server.sqlite"
[agents]
time_zone = "$time_zone"
EOF
        NO_COLOR=1 "$target_dir/release/drivetag-server" serve --config "$work/server.toml" \
            >"$work/server.log" 2>&1 &
        server_pid=$!
        for _ in $(seq 100); do
            grep -q "HTTP API ready" "$work/server.log" && break
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        if grep -q "HTTP API ready" "$work/server.log"; then break; fi
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
        log "drivetag-server did not start on port $port (attempt $attempt)"
    done
    [[ -n "$server_pid" ]] || { cat "$work/server.log" >&2; exit 1; }
    broker="mqtt://127.0.0.1:$port"
    broker_host=127.0.0.1
    broker_port=$port
    log "drivetag-server is up, its embedded broker on $broker"
fi

if command -v mosquitto_sub >/dev/null; then
    # One line per message: topic and payload length.
    mosquitto_sub -h "$broker_host" -p "$broker_port" -q 1 -F '%t %l' \
        -t "drivetag/v1/$device/#" >"$work/wire.log" 2>/dev/null &
    sub_pid=$!
fi

cat >"$work/agent.toml" <<EOF
device_id = "$device"
[mqtt]
url = "$broker"
[outbox]
path = "$work/outbox.sqlite"
[input]
gps = "$gps"
replay_speed = "1"
[pipeline]
time_zone = "$time_zone"
EOF
"$agent_bin" check-config --config "$work/agent.toml" >/dev/null

clk_tck=$(getconf CLK_TCK)
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
log "running the agent on $gps at recorded speed ($rmc_lines fixes, $drive_span), sampling every ${interval}s"
t0=$EPOCHREALTIME
NO_COLOR=1 "$agent_bin" run --config "$work/agent.toml" >"$work/agent.log" 2>&1 &
agent_pid=$!

samples="$work/samples.csv"
echo "t_s,rss_kb,hwm_kb,cpu_ticks,threads,load1,phase" >"$samples"
ended_at=""
while kill -0 "$agent_pid" 2>/dev/null; do
    status="$(cat "/proc/$agent_pid/status" 2>/dev/null)" || break
    stat="$(cat "/proc/$agent_pid/stat" 2>/dev/null)" || break
    now=$EPOCHREALTIME
    # Fields after the command name, which is in parentheses: state is $1, utime $12, stime $13.
    read -r -a fields <<<"${stat##*) }"
    ticks=$((fields[11] + fields[12]))
    rss=$(awk '/^VmRSS:/ { print $2 }' <<<"$status")
    hwm=$(awk '/^VmHWM:/ { print $2 }' <<<"$status")
    threads=$(awk '/^Threads:/ { print $2 }' <<<"$status")
    elapsed=$(awk -v a="$t0" -v b="$now" 'BEGIN { printf "%.3f", b - a }')
    phase=drive
    if [[ -z "$ended_at" ]] && grep -q "The recorded input has ended" "$work/agent.log"; then
        ended_at=$elapsed
    fi
    [[ -n "$ended_at" ]] && phase=ended
    echo "$elapsed,$rss,$hwm,$ticks,$threads,$(cut -d' ' -f1 /proc/loadavg),$phase" >>"$samples"
    if [[ -n "$ended_at" ]] && awk -v e="$elapsed" -v s="$ended_at" -v t="$tail_s" 'BEGIN { exit !(e - s >= t) }'; then
        break
    fi
    if ((duration > 0)) && awk -v e="$elapsed" -v d="$duration" 'BEGIN { exit !(e >= d) }'; then
        break
    fi
    sleep "$interval"
done
if ! kill -0 "$agent_pid" 2>/dev/null; then
    wait "$agent_pid" || true
    agent_pid=""
    cat "$work/agent.log" >&2
    log "the agent stopped by itself"
    exit 1
fi
kill -TERM "$agent_pid"
agent_rc=0
wait "$agent_pid" || agent_rc=$?
agent_pid=""
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------------------------------------
# Figures.

summaries="$(sed -n 's/.*The recorded input has ended\. summaries=\([0-9]*\).*/\1/p' "$work/agent.log" | tail -1)"
summaries="${summaries:-none yet (the run stopped before the drive ended)}"
outbox="n/a (no sqlite3)"
if command -v sqlite3 >/dev/null; then
    outbox="$(sqlite3 -separator ' ' "$work/outbox.sqlite" \
        "SELECT (SELECT value - 1 FROM meta WHERE key = 'next_seq'), count(*), coalesce(sum(length(frame)), 0) FROM outbox" |
        awk '{ printf "%s sequence numbers used; %s rows (%s bytes of frames) left after the run", $1, $2, $3 }')"
fi
wire="n/a (no mosquitto_sub)"
if [[ -n "$sub_pid" ]]; then
    sleep 1
    kill -TERM "$sub_pid" 2>/dev/null || true
    wait "$sub_pid" 2>/dev/null || true
    sub_pid=""
    # Per channel: messages and payload bytes (MQTT headers and TLS not counted).
    wire="$(sed "s|^drivetag/v1/$device/||" "$work/wire.log" |
        awk '{ n[$1]++; b[$1] += $2 } END { for (c in n) printf "%s%s %d msgs %d B", (sep++ ? ", " : ""), c, n[c], b[c] }')"
fi
warnings=$(grep -c -E ' (WARN|ERROR) ' "$work/agent.log" || true)

figures="$(awk -F, -v tck="$clk_tck" '
    NR == 1 { next }
    {
        n++; t[n] = $1; k[n] = $4
        if ($2 > rss) rss = $2
        if ($3 > hwm) hwm = $3
        if ($5 > thr) thr = $5
        if ($7 == "drive") { dn = n }
        if (n == 1) first_load = $6
        load_sum += $6
    }
    END {
        for (i = 2; i <= n; i++) {
            p = (k[i] - k[i - 1]) / tck / (t[i] - t[i - 1]) * 100
            if (p > max) { max = p; max_at = t[i] }
        }
        avg = k[n] / tck / t[n] * 100
        # The driving phase without start-up: from the first sample after 10 s to the last
        # sample before the drive ended.
        for (s = 1; s <= n && t[s] < 10; s++) {}
        steady = (dn > s) ? sprintf("%.3f", (k[dn] - k[s]) / tck / (t[dn] - t[s]) * 100) : "n/a"
        printf "samples=%d\nlength_s=%.0f\ncpu_s=%.2f\navg_cpu_pct=%.3f\nsteady_cpu_pct=%s\n", n, t[n], k[n] / tck, avg, steady
        printf "max_cpu_pct=%.2f\nmax_cpu_at_s=%.0f\npeak_rss_kb=%d\nhwm_kb=%d\nthreads=%d\nload_avg=%.2f\n", max, max_at, rss, hwm, thr, load_sum / n
    }' "$samples")"
get() { sed -n "s/^$1=//p" <<<"$figures"; }
peak_kb=$(get hwm_kb)
(($(get peak_rss_kb) > peak_kb)) && peak_kb=$(get peak_rss_kb)

verdict() { if eval "$1"; then echo "ok"; else echo "MISSED"; fi; }
missed=0
size_ok=$(verdict "((stripped_bytes <= TARGET_BINARY_BYTES))")
rss_ok=$(verdict "((peak_kb * 1024 <= TARGET_RSS_BYTES))")
cpu_ok=$(verdict "awk -v c=$(get avg_cpu_pct) -v t=$TARGET_CPU_PCT 'BEGIN { exit !(c <= t) }'")
[[ "$size_ok$rss_ok$cpu_ok" == *MISSED* ]] && missed=1

cat <<EOF
drivetag-agent footprint, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -m), $(nproc) cores, rustc $(rustc --version | cut -d' ' -f2), commit $(cd "$root" && git rev-parse --short HEAD)$(cd "$root" && git diff --quiet HEAD -- agent shared Cargo.toml Cargo.lock || echo ' + uncommitted changes')

binary      profile $profile, stripped: $stripped_bytes bytes = $(mb "$stripped_bytes")  [$size_ok, target <= 8 MB]
            as built (${built#"$root"/}): $size_bytes bytes = $(mb "$size_bytes")  (Cargo.toml profile.$profile: $profile_strips)
input       $gps ($rmc_lines RMC, $drive_span), replay_speed = "1", time zone $time_zone
uplink      $broker, device $device, $( ((with_server)) && echo "drivetag-server's embedded broker, the server acknowledging" || echo "no server of ours (summaries wait in the outbox unless another server on the broker takes them)")
run         $(get length_s) s (the drive ended at ${ended_at:-<not reached>} s), $(get samples) samples every ${interval} s, agent exit status $agent_rc after SIGTERM
peak RSS    $peak_kb KiB = $(mb $((peak_kb * 1024))) (VmHWM; largest sampled VmRSS $(get peak_rss_kb) KiB)  [$rss_ok, target <= 15 MB]
CPU         $(get cpu_s) s in $(get length_s) s: average $(get avg_cpu_pct) % of one core  [$cpu_ok, target <= 1 %]
            while driving, after start-up: $(get steady_cpu_pct) %; busiest ${interval}-s interval $(get max_cpu_pct) % (at $(get max_cpu_at_s) s)
threads     $(get threads) at most
summaries   from the drive: $summaries (the vehicle info comes on top)
outbox      $outbox
on the wire ${wire:-nothing}
log         $warnings WARN/ERROR lines from the agent
load        1-min load average $load_before before, $load_after after, $(get load_avg) on average while sampling
EOF
if ((keep)); then
    log "samples: $samples, agent log: $work/agent.log"
fi

# ---------------------------------------------------------------------------------------------
# 4. Cross-building (optional): needs `rustup target add` and the Debian/Ubuntu cross gcc.

if ((cross)); then
    echo
    installed="$(rustup target list --installed 2>/dev/null | paste -sd ' ')"
    echo "cross-building (rustup targets installed: ${installed:-none})"
    for triple in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
        case "$triple" in
            aarch64-*) gcc=aarch64-linux-gnu-gcc ;;
            armv7-*) gcc=arm-linux-gnueabihf-gcc ;;
        esac
        # The standard library for the target, and a C cross compiler: the linker, and the
        # compiler of the bundled SQLite (libsqlite3-sys builds its C with the `cc` crate).
        if [[ " $installed " != *" $triple "* ]]; then
            echo "$triple: blocked: target not installed (rustup target add $triple)"
            continue
        fi
        if ! command -v "$gcc" >/dev/null; then
            echo "$triple: blocked: $gcc not found (apt-get install gcc-${gcc%-gcc})"
            continue
        fi
        var="CARGO_TARGET_$(tr 'a-z-' 'A-Z_' <<<"$triple")_LINKER"
        if (cd "$root" && env "$var=$gcc" "CC_${triple//-/_}=$gcc" \
            nice -n 10 cargo build --quiet --profile head-unit -p drivetag-agent --target "$triple") \
            2>"$work/cross-$triple.log"; then
            out="$target_dir/$triple/head-unit/drivetag-agent"
            echo "$triple: $(stat -c %s "$out") bytes = $(mb "$(stat -c %s "$out")"); $(file -b "$out" | cut -d, -f1-2)"
        else
            echo "$triple: build FAILED:"; tail -20 "$work/cross-$triple.log"
        fi
    done
fi

exit "$missed"
