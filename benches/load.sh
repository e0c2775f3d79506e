#!/usr/bin/env bash
# Load test: sessiongate beside nginx (plain TLS proxy, no session check) and HAProxy 2.6
# (TLS proxy verifying an HS256 JWT cookie with jwt_verify), in front of the same upstream, all
# on loopback, loaded in turn in interleaved rounds; every figure is read as a ratio against a
# peer measured in the same run. Scenarios (all by default, in this order):
#   cookie  HTTP/1.1, valid session cookie (wrk): req/s, p50, p99, errors; sessiongate/nginx
#           and sessiongate/HAProxy per round (and sessiongate with a rate limit, memory/Redis)
#   h2      HTTP/2 (h2load, CONNS clients x H2_STREAMS streams): nginx http2, HAProxy as a plain
#           h2 TLS proxy, HAProxy jwt_verify over h2, sessiongate
#   idle    IDLE_CONNS idle TLS keep-alive connections held on each of nginx, HAProxy and
#           sessiongate: bytes per connection after the handshake and after one request; then
#           sessiongate's throughput on 64 active connections with and without them held
#   redis   Redis memory per stored session (10,000 sessions of 1,000 users started through the
#           app's signed grant), and the refresh path (chained refresh tokens, every request
#           rotates) on the memory store and on Redis, beside redis-benchmark EVALSHA on the
#           same Redis (`refresh` runs only the refresh part)
#   login   JSON logins (argon2id)
#   profile perf record of sessiongate, then of nginx, under the cookie load, kernel symbols
#           included (not in the default set)
#   syscalls system calls and context switches per request on nginx, HAProxy and sessiongate
#           under the cookie load, counted by perf's tracepoints (not in the default set)
#
#   benches/load.sh                 # defaults: 3 rounds, 10 s each, wrk -t1 -c64
#   ROUNDS=5 DURATION=15 CONNS=64 benches/load.sh
#   SCENARIOS=cookie,h2 benches/load.sh
#   IDLE_CONNS=10000 H2_STREAMS=10 REDIS_SESSIONS=10000 REDIS_USERS=1000 benches/load.sh
#   SG_BIN=path BASELINE_BIN=path benches/load.sh  # another build measured, and one beside
#   ACCESS_LOG=1 benches/load.sh      # sessiongate with its access log on (off by default here,
#                                     # as nginx's is: the peers are compared doing the same work)
#
# The cookie and h2 scenarios also print each target's own CPU time per request, in user space
# and in the kernel. For a before/after of a change, benches/instructions.py counts
# instructions per request with callgrind: repeatable where throughput here is not.
#
# Installs what is missing (nginx, haproxy, wrk, h2load, redis-server) from Debian's packages.
# Stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for t in nginx haproxy wrk python3 h2load:nghttp2-client redis-server redis-benchmark:redis-tools; do
  cmd=${t%%:*} pkg=${t#*:}
  command -v "$cmd" >/dev/null || [ -x "/usr/sbin/$cmd" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "load.sh: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --release --locked -q
exec python3 benches/load.py "$@"
