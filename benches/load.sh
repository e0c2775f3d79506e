#!/usr/bin/env bash
# Load test: sessiongate beside nginx (plain TLS proxy, no session check) and HAProxy 2.6
# (TLS proxy verifying an HS256 JWT cookie with jwt_verify), in front of the same upstream, all
# on loopback, loaded in turn with wrk in interleaved rounds. Prints requests/s, p50, p99 and
# errors per target and the ratios sessiongate/nginx and sessiongate/HAProxy per round.
#
#   benches/load.sh                 # defaults: 3 rounds, 10 s each, wrk -t1 -c64
#   ROUNDS=5 DURATION=15 CONNS=64 benches/load.sh
#   SCENARIOS=cookie benches/load.sh  # cookie | refresh | login | memory (comma-separated)
#   ACCESS_LOG=1 benches/load.sh      # sessiongate with its access log on (off by default here,
#                                     # as nginx's is: the peers are compared doing the same work)
#
# Installs what is missing (nginx, haproxy, wrk) from Debian's packages. Stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for t in nginx haproxy wrk python3; do
  command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] || missing+=("$t")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "load.sh: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --release --locked -q
exec python3 benches/load.py "$@"
