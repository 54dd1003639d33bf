#!/usr/bin/env bash
# demo.sh shows lbt at work against a throwaway PostgreSQL cluster in
# ./demo-data, which it removes when it ends, however it ends.
#
# For now it only builds lbt, starts the cluster, runs a small workload on
# two tables and prints lbt's help: the backup and restore steps come as
# the commands do.
#
# The cluster has the settings of the test harness (test/pgtest). When run as
# root, the server runs as the "postgres" user, since it refuses root.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
demo=$root/demo-data
data=$demo/pgdata

# Where test/pgtest looks, in the same order.
find_bindir() {
	local postgres dir
	if [[ -n ${LBT_PG_BINDIR:-} ]]; then
		echo "$LBT_PG_BINDIR"
		return
	fi
	if postgres=$(command -v postgres); then
		dirname "$(readlink -f "$postgres")"
		return
	fi
	if dir=$(pg_config --bindir 2>/dev/null) && [[ -x $dir/postgres ]]; then
		echo "$dir"
		return
	fi
	dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	if [[ -n $dir && -x $dir/postgres ]]; then
		echo "$dir"
		return
	fi
	echo 'demo: no PostgreSQL server found: run "make deps"' >&2
	return 1
}

# as_server runs a command as the server's user.
as_server() {
	if [[ $(id -u) == 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# free_port prints a TCP port on 127.0.0.1 that nothing listens on.
free_port() {
	local port
	for _ in $(seq 100); do
		port=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return
		fi
	done
	echo "demo: no free port found" >&2
	return 1
}

stop_cluster() {
	if [[ -f $data/postmaster.pid ]]; then
		as_server "$bindir/pg_ctl" stop -D "$data" -m fast -w >/dev/null 2>&1 || true
	fi
	rm -rf "$demo"
}

bindir=$(find_bindir)

echo "== building bin/lbt"
make --no-print-directory build

echo "== starting PostgreSQL from $bindir in $demo"
stop_cluster # left over from a run that was killed
trap stop_cluster EXIT
# An interrupted script exits, which runs the EXIT trap.
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$demo"
if [[ $(id -u) == 0 ]]; then
	chown postgres: "$demo"
fi
if (( ${#demo} + 16 > 100 )); then
	echo "demo: $demo is too long a path for the server's Unix socket" >&2
	exit 1
fi
port=$(free_port)
as_server "$bindir/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C --no-sync >/dev/null
cat >>"$data/postgresql.conf" <<CONF
# Added by scripts/demo.sh, as in test/pgtest.
listen_addresses = '127.0.0.1'
unix_socket_directories = '$demo'
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
wal_sender_timeout = 60s
max_connections = 100
shared_buffers = 128MB
fsync = off
logging_collector = off
log_destination = 'stderr'
CONF
as_server "$bindir/pg_ctl" start -D "$data" -l "$demo/postgres.log" -o "-p $port" -w -t 60 >/dev/null
dsn="host=$demo port=$port user=postgres dbname=postgres sslmode=disable"
echo "   listening on 127.0.0.1:$port and in $demo"

psql() {
	"$bindir/psql" -X -v ON_ERROR_STOP=1 -q "$dsn" "$@"
}

echo "== creating two tables with a small workload"
psql <<'SQL'
CREATE TABLE customers (
	id bigint PRIMARY KEY,
	name text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE orders (
	id bigserial PRIMARY KEY,
	customer_id bigint NOT NULL REFERENCES customers,
	amount numeric(10, 2) NOT NULL,
	note text
);
INSERT INTO customers (id, name)
	SELECT g, 'customer ' || g FROM generate_series(1, 100) g;
INSERT INTO orders (customer_id, amount)
	SELECT 1 + g % 100, (g % 997) / 10.0 FROM generate_series(1, 1000) g;
UPDATE orders SET note = 'priority' WHERE id % 10 = 0;
DELETE FROM orders WHERE id % 50 = 0;
SQL
psql -c "SELECT (SELECT count(*) FROM customers) AS customers, (SELECT count(*) FROM orders) AS orders"

echo "== bin/lbt --help"
bin/lbt --help

echo "== done; stopping PostgreSQL and removing $demo"
