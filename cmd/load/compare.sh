#!/usr/bin/env bash
# compare.sh: one sitting, the messenger and Centrifugo on the same shapes
# (docs/benchmarks.md, "Centrifugo beside the messenger").
#
# For each of ROUNDS rounds, for each shape, each server in TARGETS runs in
# turn (messenger, then Centrifugo), each time a fresh server process:
#   connect-N   load -scenario connect -conns N, for N in CONNS: time to
#               open them, connections per second, server memory per idle
#               connection (RSS and Go heap from the server's /metrics);
#   fanout      load -scenario fanout -members FANOUT_MEMBERS -rates
#               FANOUT_RATES (each size stops at its first saturated rate);
#   broadcast-M one room of BCAST_MEMBERS, BCAST_RATE publishes/s for
#               BCAST_DURATION (empty BCAST_MEMBERS: skipped).
# Every run's -json report goes to OUT/SHAPE.TARGET.rROUND.json (its
# Markdown to .md, its progress and errors to .log); OUT/summary.md gets
# the machine, the load average before each run, and `load compare OUT`:
# each measure's median and min–max, messenger beside Centrifugo;
# OUT/fanout.html the first round's fan-out plots, server beside server.
#
# The messenger runs as in docs/benchmarks.md "The tool" (anonymous rooms,
# SQLite, RSA-3072 identity, every limit off) with -metrics-addr.
# Centrifugo (CENTRIFUGO_BIN, v6: go install
# github.com/centrifugal/centrifugo/v6@v6.9.1) runs with the configuration
# of issue 18: memory engine, HTTP on 127.0.0.1 only, log level warn,
# anonymous connect, subscribe and publish for anonymous clients in
# channels without a namespace, everything else default except the
# /metrics endpoint (prometheus.enabled), so that both servers' memory is
# read the same way.
#
# Every setting is an environment variable (defaults below). A short
# check, about two minutes:
#   ROUNDS=1 CONNS="200 500" FANOUT_MEMBERS=20,100 FANOUT_RATES=50,200 \
#     FANOUT_DURATION=2s BCAST_MEMBERS=200 HOLD=2s DRAIN=5s cmd/load/compare.sh
set -euo pipefail

ROUNDS=${ROUNDS:-3}
TARGETS=${TARGETS:-messenger centrifugo}
CONNS=${CONNS:-1000 5000 19500}
CONCURRENCY=${CONCURRENCY:-64}
HOLD=${HOLD:-5s}
FANOUT_MEMBERS=${FANOUT_MEMBERS:-100,1000}
FANOUT_RATES=${FANOUT_RATES:-20,50,100,200,500,1000,2000,5000}
FANOUT_DURATION=${FANOUT_DURATION:-5s}
BCAST_MEMBERS=${BCAST_MEMBERS-5000}
BCAST_RATE=${BCAST_RATE:-1}
BCAST_DURATION=${BCAST_DURATION:-5s}
DRAIN=${DRAIN:-10s}
SIZE=${SIZE:-256}
PORT=${PORT:-18191}                 # the messenger
METRICS_PORT=${METRICS_PORT:-19191} # the messenger's -metrics-addr
CF_PORT=${CF_PORT:-18000}           # Centrifugo
CENTRIFUGO_BIN=${CENTRIFUGO_BIN:-$(go env GOPATH)/bin/centrifugo}
OUT=${OUT:-compare-$(date -u +%Y%m%dT%H%M%SZ)}
LOAD_FLAGS=${LOAD_FLAGS:-}          # more flags for every load run

repo=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$OUT/bin"
OUT=$(cd "$OUT" && pwd)
for t in $TARGETS; do
	case $t in
	messenger) ;;
	centrifugo) [ -x "$CENTRIFUGO_BIN" ] || { echo "compare.sh: no Centrifugo at CENTRIFUGO_BIN=$CENTRIFUGO_BIN" >&2; exit 1; } ;;
	*) echo "compare.sh: unknown target $t in TARGETS" >&2; exit 1 ;;
	esac
done

# Room for the largest run's sockets in each process (the server and the
# load client each hold one end; both inherit this limit).
most=0
for n in $CONNS ${BCAST_MEMBERS:-0} ${FANOUT_MEMBERS//,/ }; do [ "$n" -gt "$most" ] && most=$n; done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((most + 500)) ]; then
	echo "compare.sh: open files limit $(ulimit -n) is below $((most + 500)) for $most connections; raise it (ulimit -Hn)" >&2
	exit 1
fi

(cd "$repo" && go build -o "$OUT/bin/" ./cmd/messenger ./cmd/load)

cat >"$OUT/centrifugo.json" <<EOF
{
  "http_server": {"address": "127.0.0.1", "port": $CF_PORT},
  "log": {"level": "warn"},
  "engine": {"type": "memory"},
  "client": {"allow_anonymous_connect_without_token": true},
  "channel": {"without_namespace": {
    "allow_subscribe_for_client": true, "allow_subscribe_for_anonymous": true,
    "allow_publish_for_client": true, "allow_publish_for_anonymous": true}},
  "prometheus": {"enabled": true}
}
EOF

SERVER_PID= DATA=
stop_server() {
	if [ -n "$SERVER_PID" ]; then
		kill -INT "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
	fi
	SERVER_PID=
	[ -n "$DATA" ] && rm -rf "$DATA"
	DATA=
}
trap stop_server EXIT

# wait_for URL: until it answers 200, the server's death, or 60 s.
wait_for() {
	for _ in $(seq 600); do
		curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
		kill -0 "$SERVER_PID" 2>/dev/null || { echo "compare.sh: the server exited; see $2" >&2; return 1; }
		sleep 0.1
	done
	echo "compare.sh: $1 did not answer in 60 s" >&2
	return 1
}

# start TARGET LOG: a fresh server; sets SERVER_PID, URL and METRICS.
start() {
	case $1 in
	messenger)
		DATA=$(mktemp -d)
		"$OUT/bin/messenger" -addr 127.0.0.1:$PORT -data "$DATA" -anonymous -log-level warn -identity-bits 3072 \
			-max-conns -1 -max-conns-per-addr -1 -max-handshakes -1 -max-handshakes-per-addr -1 \
			-handshake-rate off -request-rate off -user-request-rate off -send-rate off -room-send-rate off \
			-rooms-per-conn -1 -room-members -1 -metrics-addr 127.0.0.1:$METRICS_PORT >"$2" 2>&1 &
		SERVER_PID=$!
		URL=ws://127.0.0.1:$PORT/ws
		METRICS=http://127.0.0.1:$METRICS_PORT/metrics
		wait_for "http://127.0.0.1:$PORT/identity" "$2"
		;;
	centrifugo)
		(cd "$OUT" && exec "$CENTRIFUGO_BIN" --config "$OUT/centrifugo.json") >"$2" 2>&1 &
		SERVER_PID=$!
		URL=ws://127.0.0.1:$CF_PORT/connection/websocket
		METRICS=http://127.0.0.1:$CF_PORT/metrics
		wait_for "$METRICS" "$2"
		;;
	esac
}

{
	echo "# messenger beside Centrifugo, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo
	echo "- machine: $(nproc) CPUs (nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(uname -sr), $(go env GOVERSION)"
	echo "- messenger: $(git -C "$repo" rev-parse --short HEAD)$(git -C "$repo" diff --quiet HEAD || echo ' (with uncommitted changes)')"
	echo "- Centrifugo: $CENTRIFUGO_BIN, $(go version -m "$CENTRIFUGO_BIN" 2>/dev/null | awk '$1 == "mod" {print $2, $3; exit}')"
	echo "- settings: ROUNDS=$ROUNDS CONNS=\"$CONNS\" CONCURRENCY=$CONCURRENCY HOLD=$HOLD FANOUT_MEMBERS=$FANOUT_MEMBERS FANOUT_RATES=$FANOUT_RATES FANOUT_DURATION=$FANOUT_DURATION BCAST_MEMBERS=$BCAST_MEMBERS BCAST_RATE=$BCAST_RATE BCAST_DURATION=$BCAST_DURATION DRAIN=$DRAIN SIZE=$SIZE LOAD_FLAGS=\"$LOAD_FLAGS\""
	echo
	echo "## Runs"
	echo
	echo "| round | shape | server | load average before (1/5/15 min) | load exit | seconds |"
	echo "|---|---|---|---|---|---|"
} >"$OUT/runs.md"

# one ROUND SHAPE TARGET LOAD-ARGS…: a fresh server, one load run.
one() {
	local round=$1 shape=$2 target=$3
	shift 3
	local name="$OUT/$shape.$target.r$round"
	local avg rc=0 t0=$SECONDS
	start "$target" "$name.server.log"
	avg=$(cut -d' ' -f1-3 /proc/loadavg)
	printf 'round %s  %-16s %-10s load %s … ' "$round" "$shape" "$target" "$avg"
	# shellcheck disable=SC2086 # LOAD_FLAGS is a list of flags
	"$OUT/bin/load" -target "$target" -url "$URL" -metrics-url "$METRICS" -concurrency "$CONCURRENCY" -size "$SIZE" \
		-drain "$DRAIN" -json "$name.json" $LOAD_FLAGS "$@" >"$name.md" 2>"$name.log" || rc=$?
	stop_server
	echo "exit $rc, $((SECONDS - t0)) s"
	echo "| $round | $shape | $target | $avg | $rc | $((SECONDS - t0)) |" >>"$OUT/runs.md"
}

for round in $(seq "$ROUNDS"); do
	for n in $CONNS; do
		for t in $TARGETS; do
			one "$round" "connect-$n" "$t" -scenario connect -conns "$n" -hold "$HOLD"
		done
	done
	for t in $TARGETS; do
		one "$round" fanout "$t" -scenario fanout -members "$FANOUT_MEMBERS" -rates "$FANOUT_RATES" -duration "$FANOUT_DURATION"
	done
	if [ -n "$BCAST_MEMBERS" ]; then
		for t in $TARGETS; do
			one "$round" "broadcast-$BCAST_MEMBERS" "$t" -scenario fanout -members "$BCAST_MEMBERS" -rates "$BCAST_RATE" -duration "$BCAST_DURATION"
		done
	fi
done

{
	cat "$OUT/runs.md"
	echo
	echo "## Measures (median and min–max over the rounds)"
	"$OUT/bin/load" compare -html "$OUT/fanout.html" "$OUT"
} >"$OUT/summary.md"
echo "compare.sh: $OUT/summary.md, plots in $OUT/fanout.html"
