package ingest

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the daemon's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	transactions prometheus.Counter
	changes      *prometheus.CounterVec
	blobBytes    prometheus.Counter
	flushes      prometheus.Histogram
	archivedLSN  prometheus.Gauge
	lastCommit   prometheus.Gauge
	retries      prometheus.Counter
	retainedWAL  prometheus.Gauge
	slotLag      prometheus.Gauge
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		transactions: prometheus.NewCounter(prometheus.CounterOpts{Name: "lbt_archived_transactions_total",
			Help: "Transactions archived (made durable) since start."}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lbt_archived_changes_total",
			Help: "Row changes archived since start, per table."}, []string{"table"}),
		blobBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "lbt_segment_bytes_written_total",
			Help: "Compressed bytes appended to segment files since start."}),
		flushes: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "lbt_flush_duration_seconds",
			Help: "Time to make a batch of transactions durable (fsync and catalog commit).", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		archivedLSN: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lbt_archived_lsn",
			Help: "WAL position confirmed to the server: everything before it is durable in the archive."}),
		lastCommit: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lbt_last_archived_commit_timestamp_seconds",
			Help: "Commit time of the newest archived transaction, as a Unix timestamp."}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Name: "lbt_replication_retries_total",
			Help: "Times the replication connection was lost and retried."}),
		retainedWAL: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lbt_slot_retained_wal_bytes",
			Help: "WAL the replication slot keeps on the source (from its restart_lsn), read every 30 seconds."}),
		slotLag: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lbt_slot_lag_bytes",
			Help: "WAL written on the source after the position the slot confirmed, read every 30 seconds."}),
	}
	reg.MustRegister(m.transactions, m.changes, m.blobBytes, m.flushes, m.archivedLSN, m.lastCommit, m.retries, m.retainedWAL, m.slotLag)
	return m
}
