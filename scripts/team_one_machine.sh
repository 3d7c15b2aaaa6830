#!/usr/bin/env bash
# A team set-up on one machine: PostgreSQL for the run store and a Ray head for the jobs, both in
# one folder, bound to 127.0.0.1, then the workspace pointed at both. The same steps as README
# "Run it for a team", with the machines collapsed into one.
#
#   scripts/team_one_machine.sh DIR [--check]
#
# DIR holds the server's data (DIR/pg), Ray's files (DIR/ray) and the workspace (DIR/workspace).
# Without --check it prints the two exports to use and leaves both servers running
# (stop them with: scripts/team_one_machine.sh DIR --stop). With --check it trains one digits
# epoch through Ray into PostgreSQL, prints the run, and stops what it started.
set -euo pipefail

dir=$(realpath -m "${1:?usage: $0 DIR [--check|--stop]}")
mode=${2:-}
cd "$(dirname "$0")/.."
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)   # Debian's binaries, not PATH
pg_port=${PG_PORT:-55432}
dash_port=${RAY_DASHBOARD_PORT:-58265}
as_pg=()
[[ $(id -u) == 0 ]] && as_pg=(runuser -u postgres --)        # PostgreSQL refuses to run as root

stop() {
  "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/pg" -m fast -w stop >/dev/null 2>&1 || true
  # Only the Ray processes started here: their command lines name this folder.
  for sig in TERM KILL; do
    pids=$(grep -lsa -- "$dir/ray" /proc/[0-9]*/cmdline | cut -d/ -f3 || true)
    [[ -n $pids ]] && kill -s $sig $pids 2>/dev/null || true
    sleep 2
  done
}
if [[ $mode == --stop ]]; then stop; exit 0; fi

mkdir -p "$dir"
if [[ ! -d $dir/pg ]]; then
  [[ ${#as_pg[@]} -gt 0 ]] && chown postgres: "$dir"
  "${as_pg[@]}" "$bin/initdb" -D "$dir/pg" -A trust -U postgres --locale=C.UTF-8 >/dev/null
fi
"${as_pg[@]}" "$bin/pg_ctl" -D "$dir/pg" -l "$dir/pg.log" -w start \
  -o "-p $pg_port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir" >/dev/null
"${as_pg[@]}" "$bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres lab2market 2>/dev/null || true
# Every fixed port of a head is named, so a second cluster on the same machine (another team
# member's, a test's) cannot take the job agent's port and leave this head without one.
ray start --head --num-cpus "${RAY_CPUS:-2}" --temp-dir "$dir/ray" --node-ip-address 127.0.0.1 \
  --port "${RAY_PORT:-56379}" --dashboard-host 127.0.0.1 --dashboard-port "$dash_port" \
  --dashboard-agent-listen-port "${RAY_AGENT_PORT:-52365}" \
  --ray-client-server-port "${RAY_CLIENT_PORT:-10001}" --disable-usage-stats >/dev/null

export LAB2MARKET_HOME=$dir/workspace
export LAB2MARKET_STORE=postgresql://postgres@127.0.0.1:$pg_port/lab2market
python -m core executor ray --ray-address "http://127.0.0.1:$dash_port"

if [[ $mode == --check ]]; then
  trap stop EXIT
  python -m core train --dataset digits --epochs 1 --json   # queued, run by Ray, followed here
  python -m core store info
  exit 0
fi
cat <<EOF
export LAB2MARKET_HOME=$LAB2MARKET_HOME
export LAB2MARKET_STORE=$LAB2MARKET_STORE
streamlit run app.py        # the dashboard, on this store and this cluster
EOF
