package basebackup

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the scheduler's Prometheus metrics: basebackups running,
// done and failed with their durations, and purges with the space they
// returned. A nil *Metrics records nothing.
type Metrics struct {
	running     prometheus.Gauge
	basebackups *prometheus.CounterVec
	duration    prometheus.Histogram
	purges      *prometheus.CounterVec
	purgedBytes prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		running: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lbt_basebackups_running",
			Help: "Basebackups the scheduler is taking now."}),
		basebackups: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lbt_basebackups_total",
			Help: "Basebackups the scheduler took since start, by result (done, failed)."}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "lbt_basebackup_duration_seconds",
			Help: "Time to take one basebackup, snapshot to catalog row.", Buckets: prometheus.ExponentialBuckets(0.1, 4, 10)}),
		purges: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lbt_purges_total",
			Help: "Purge runs since start, by result (done, failed)."}, []string{"result"}),
		purgedBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "lbt_purged_bytes_total",
			Help: "Disk space purge returned since start, segments and basebackups."}),
	}
	reg.MustRegister(m.running, m.basebackups, m.duration, m.purges, m.purgedBytes)
	return m
}

func (m *Metrics) started() {
	if m != nil {
		m.running.Inc()
	}
}

func (m *Metrics) finished(took time.Duration, err error) {
	if m == nil {
		return
	}
	m.running.Dec()
	if err != nil {
		m.basebackups.WithLabelValues("failed").Inc()
		return
	}
	m.basebackups.WithLabelValues("done").Inc()
	m.duration.Observe(took.Seconds())
}

func (m *Metrics) purged(bytes int64, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.purges.WithLabelValues("failed").Inc()
		return
	}
	m.purges.WithLabelValues("done").Inc()
	m.purgedBytes.Add(float64(bytes))
}
