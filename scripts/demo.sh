#!/usr/bin/env bash
# demo.sh shows lbt at work against a throwaway PostgreSQL cluster in
# ./demo-data, which it removes when it ends, however it ends.
#
# It builds lbt, starts the cluster, creates two tables, runs lbt backup,
# makes changes and an accident, shows who did what with lbt inspect, and
# restores a table to the moment before the accident with lbt restore --until.
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

echo "== creating two tables with some data"
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
SQL

cat >"$demo/lbt.yaml" <<YAML
archiveDir: $demo/archive
slotname: demo
publication: demo
initialBasebackup: true
flushInterval: 200ms
metricsAddr: 127.0.0.1:0
db:
  host: $demo
  port: $port
  user: postgres
  database: postgres
YAML
lbt() { "$root/bin/lbt" --config "$demo/lbt.yaml" "$@"; }

echo "== lbt backup, in the background (log: $demo/lbt.log)"
"$root/bin/lbt" backup --config "$demo/lbt.yaml" >"$demo/lbt.log" 2>&1 &
lbt_pid=$!
stop_all() {
	if kill -0 "$lbt_pid" 2>/dev/null; then
		kill -TERM "$lbt_pid" 2>/dev/null || true
		wait "$lbt_pid" 2>/dev/null || true
	fi
	stop_cluster
}
trap stop_all EXIT

# wait_archived waits until lbt has archived everything committed so far.
wait_archived() {
	local target
	target=$(psql -At -c "SELECT pg_current_wal_lsn()")
	for _ in $(seq 300); do
		if psql -At -c "SELECT confirmed_flush_lsn >= '$target' FROM pg_replication_slots WHERE slot_name = 'demo'" | grep -q t; then
			return
		fi
		if ! kill -0 "$lbt_pid" 2>/dev/null; then
			echo "demo: lbt backup stopped:" >&2
			cat "$demo/lbt.log" >&2
			exit 1
		fi
		sleep 0.2
	done
	echo "demo: lbt did not catch up; its log:" >&2
	cat "$demo/lbt.log" >&2
	exit 1
}
for _ in $(seq 300); do
	[[ $(lbt status --format json 2>/dev/null | grep -o '"basebackups":[0-9]*' | cut -d: -f2) -ge 2 ]] && break
	sleep 0.2
done
lbt status

echo "== lbt setup --capture-actors: each writing transaction will say who it was"
lbt setup --capture-actors

echo "== a workload: the application changes orders, and a clerk edits customer 42"
PGAPPNAME=shop psql -c "UPDATE orders SET note = 'priority' WHERE id % 10 = 0"
PGAPPNAME=shop psql -c "INSERT INTO orders (customer_id, amount) SELECT 1 + g % 100, 9.99 FROM generate_series(1, 200) g"
PGAPPNAME=backoffice psql -c "UPDATE customers SET name = 'Ada Lovelace' WHERE id = 42"
wait_archived
sleep 1
good_time=$(psql -At -c "SELECT to_char(clock_timestamp(), 'YYYY-MM-DD HH24:MI:SS.US')")
# The checksum restore prints (docs/RESTORE.md): md5-sum64 over the rows'
# text, one pass, any order. orders has no generated column, so o::text is
# ROW(its columns)::text.
good_md5=$(psql -At -c "SELECT lpad(to_hex(((coalesce(sum(('x' || substr(md5(o::text), 1, 16))::bit(64)::bigint), 0) % 18446744073709551616 + 27670116110564327424) % 18446744073709551616 - 9223372036854775808)::bigint), 16, '0') FROM orders o")
good_rows=$(psql -At -c "SELECT count(*) FROM orders")
echo "   at $good_time: orders has $good_rows rows, md5-sum64 $good_md5"
sleep 1

echo "== an accident: somebody deletes most orders, and renames customer 42"
PGAPPNAME=oops psql -c "DELETE FROM orders WHERE amount < 90"
PGAPPNAME=oops psql -c "UPDATE customers SET name = 'nobody' WHERE id = 42"
psql -c "SELECT count(*) AS orders_left FROM orders"
wait_archived

echo "== lbt inspect history: who changed customer 42, and when"
lbt inspect history --table customers --key id=42

echo "== lbt restore: orders as it was at $good_time, beside the original"
lbt restore --table orders --until "$good_time" --target-table orders_restored
restored_md5=$(psql -At -c "SELECT lpad(to_hex(((coalesce(sum(('x' || substr(md5(o::text), 1, 16))::bit(64)::bigint), 0) % 18446744073709551616 + 27670116110564327424) % 18446744073709551616 - 9223372036854775808)::bigint), 16, '0') FROM orders_restored o")
restored_rows=$(psql -At -c "SELECT count(*) FROM orders_restored")
echo "   orders_restored has $restored_rows rows, md5-sum64 $restored_md5"
if [[ $restored_md5 != "$good_md5" ]]; then
	echo "demo: the restored table differs from orders at $good_time" >&2
	exit 1
fi
echo "   identical to orders at $good_time"

echo "== lbt verify --read-data"
lbt verify --read-data

echo "== done; stopping lbt and PostgreSQL, removing $demo"
