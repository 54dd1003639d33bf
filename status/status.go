// Package status judges whether a backup is healthy, as `lbt status`
// reports it to people and to monitoring: a Nagios-style state with the
// reasons for it, and the figures behind them in a stable JSON form
// (docs/STATUS.md).
package status

import (
	"fmt"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
)

// State is a Nagios plugin state; its value is the plugin's exit status.
type State int

// The states. Unknown is a judgement that could not be made.
const (
	OK       State = 0
	Warning  State = 1
	Critical State = 2
	Unknown  State = 3
)

func (s State) String() string {
	switch s {
	case OK:
		return "OK"
	case Warning:
		return "WARNING"
	case Critical:
		return "CRITICAL"
	default:
		return "UNKNOWN"
	}
}

// rank orders states for combining: what is known to be critical outranks
// what could not be judged, which outranks a warning.
func (s State) rank() int {
	switch s {
	case OK:
		return 0
	case Warning:
		return 1
	case Unknown:
		return 2
	default:
		return 3
	}
}

// MarshalText writes the state as its name.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Thresholds bound what is OK. Zero turns a threshold off.
type Thresholds struct {
	WarnLag int64         `json:"warn_lag_bytes"` // WAL the slot retains on the source
	CritLag int64         `json:"crit_lag_bytes"`
	WarnAge time.Duration `json:"-"` // since the archive last advanced
	CritAge time.Duration `json:"-"`
}

// Table is one archived table's basebackup state.
type Table struct {
	Table                string     `json:"table"`
	LastBasebackup       *time.Time `json:"last_basebackup"` // null: none yet
	BasebackupAgeSeconds *float64   `json:"basebackup_age_seconds"`
}

// Report is what lbt status says. Its JSON form is a contract: fields are
// added, never renamed or removed, and consumers ignore the ones they do
// not know.
// Upload is how far the daemon has got uploading to the object store.
type Upload struct {
	ArchiveURL string `json:"archive_url"`
	// CoveredLSN is the end LSN the bucket holds everything before.
	CoveredLSN   string `json:"covered_lsn,omitempty"`
	BacklogFiles int    `json:"backlog_files"`
	BacklogBytes int64  `json:"backlog_bytes"`
	// OldestUnshipped is the commit time of the newest transaction in the
	// oldest catalog snapshot not yet uploaded (within one uploadInterval
	// of the oldest unshipped commit); null when nothing waits.
	OldestUnshipped *time.Time `json:"oldest_unshipped_commit"`
	LastError       string     `json:"last_error,omitempty"`
	// UpdatedAt is when the daemon last wrote its upload state; null when
	// no daemon has uploaded from this archiveDir.
	UpdatedAt *time.Time `json:"updated_at"`
}

type Report struct {
	State   State    `json:"state"`
	Reasons []string `json:"reasons"`

	ArchiveDir  string `json:"archive_dir"`
	ArchivedLSN string `json:"archived_lsn,omitempty"`
	// LastCommit is the commit time of the newest archived transaction;
	// LastAdvanced the later of it and the last time the daemon recorded
	// its position (it does so on an idle source too).
	LastCommit        *time.Time `json:"last_commit"`
	LastCommitAge     *float64   `json:"last_commit_age_seconds"`
	LastAdvanced      *time.Time `json:"last_advanced"`
	ArchiveAgeSeconds *float64   `json:"archive_age_seconds"`

	Epochs            int    `json:"epochs"`
	EpochReason       string `json:"epoch_reason,omitempty"`
	Tables            int    `json:"tables"`
	TablesWithoutBase int    `json:"tables_without_basebackup"`
	Transactions      int64  `json:"transactions"`
	Changes           int64  `json:"changes"`
	SegmentBytes      int64  `json:"segment_bytes"`
	Basebackups       int    `json:"basebackups"`
	BasebackupBytes   int64  `json:"basebackup_bytes"`

	SourceReachable bool   `json:"source_reachable"`
	SourceError     string `json:"source_error,omitempty"`
	Slot            string `json:"slot"`
	SlotExists      bool   `json:"slot_exists"`
	SlotActive      bool   `json:"slot_active"`
	// LagBytes is the WAL written on the source after the position the
	// slot confirmed; RetainedWALBytes the WAL the slot keeps there.
	LagBytes         int64  `json:"lag_bytes"`
	RetainedWALBytes int64  `json:"retained_wal_bytes"`
	WALStatus        string `json:"wal_status,omitempty"` // PostgreSQL 13+
	// SafeWALSize and MaxSlotWALKeepSize are null without a limit.
	SafeWALSize        *int64 `json:"safe_wal_size"`
	MaxSlotWALKeepSize *int64 `json:"max_slot_wal_keep_size"`

	// Upload is the object store's part (archiveUrl), from the daemon's
	// last upload attempt; absent without archiveUrl.
	Upload *Upload `json:"upload,omitempty"`

	Thresholds    Thresholds `json:"thresholds"`
	WarnAgeSecond float64    `json:"warn_age_seconds"`
	CritAgeSecond float64    `json:"crit_age_seconds"`

	TableStates []Table `json:"table_states"`
}

// Judge sets r's State and Reasons from its figures, the thresholds and
// the time now, and fills in the ages.
func Judge(r *Report, th Thresholds, now time.Time) {
	r.Thresholds = th
	r.WarnAgeSecond, r.CritAgeSecond = th.WarnAge.Seconds(), th.CritAge.Seconds()
	r.State, r.Reasons = OK, nil
	raise := func(s State, format string, args ...any) {
		if s.rank() > r.State.rank() {
			r.State = s
		}
		r.Reasons = append(r.Reasons, s.String()+": "+fmt.Sprintf(format, args...))
	}
	if r.LastCommit != nil {
		r.LastCommitAge = seconds(now.Sub(*r.LastCommit))
	}
	if r.LastAdvanced != nil {
		r.ArchiveAgeSeconds = seconds(now.Sub(*r.LastAdvanced))
	}
	for i := range r.TableStates {
		if t := r.TableStates[i].LastBasebackup; t != nil {
			r.TableStates[i].BasebackupAgeSeconds = seconds(now.Sub(*t))
		}
	}

	if !r.SourceReachable {
		raise(Unknown, "source not reachable: %s", r.SourceError)
	} else {
		judgeSlot(r, th, raise)
	}
	switch {
	case r.LastAdvanced == nil:
		raise(Warning, "the archive holds no transaction yet (is lbt backup running?)")
	default:
		age := now.Sub(*r.LastAdvanced)
		switch {
		case th.CritAge > 0 && age >= th.CritAge:
			raise(Critical, "the archive last advanced %s ago (crit %s)", roundAge(age), th.CritAge)
		case th.WarnAge > 0 && age >= th.WarnAge:
			raise(Warning, "the archive last advanced %s ago (warn %s)", roundAge(age), th.WarnAge)
		}
	}
	if r.State == OK {
		r.Reasons = append(r.Reasons, fmt.Sprintf("OK: archived up to %s, slot %s keeps %s of WAL", r.ArchivedLSN, r.Slot, size(r.RetainedWALBytes)))
	}
}

func judgeSlot(r *Report, th Thresholds, raise func(State, string, ...any)) {
	if !r.SlotExists {
		raise(Critical, "slot %s does not exist on the source: no change is kept for the archive (lbt backup creates it)", r.Slot)
		return
	}
	switch r.WALStatus {
	case "lost":
		raise(Critical, "slot %s lost WAL it needed (wal_status lost): changes are missing from the archive, and lbt backup will start a new epoch", r.Slot)
	case "unreserved":
		raise(Critical, "slot %s keeps more WAL than max_slot_wal_keep_size allows (wal_status unreserved): the server drops that WAL at its next checkpoint and the slot with it", r.Slot)
	}
	switch {
	case th.CritLag > 0 && r.RetainedWALBytes >= th.CritLag:
		raise(Critical, "slot %s retains %s of WAL (crit %s)", r.Slot, size(r.RetainedWALBytes), size(th.CritLag))
	case th.WarnLag > 0 && r.RetainedWALBytes >= th.WarnLag:
		raise(Warning, "slot %s retains %s of WAL (warn %s)", r.Slot, size(r.RetainedWALBytes), size(th.WarnLag))
	}
	if r.SafeWALSize != nil && r.MaxSlotWALKeepSize != nil && r.WALStatus != "lost" && r.WALStatus != "unreserved" &&
		*r.SafeWALSize < *r.MaxSlotWALKeepSize/5 {
		raise(Warning, "slot %s can keep only %s more of WAL before the server drops it (max_slot_wal_keep_size %s)",
			r.Slot, size(*r.SafeWALSize), size(*r.MaxSlotWALKeepSize))
	}
	if !r.SlotActive {
		raise(Warning, "slot %s is inactive: lbt backup is not running", r.Slot)
	}
}

// Line is the first line of the report: the state and why.
func (r *Report) Line() string {
	var why []string
	for _, reason := range r.Reasons {
		_, text, _ := strings.Cut(reason, ": ")
		why = append(why, text)
	}
	return r.State.String() + ": " + strings.Join(why, "; ")
}

func seconds(d time.Duration) *float64 {
	s := d.Seconds()
	return &s
}

func roundAge(d time.Duration) time.Duration {
	if d > time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(100 * time.Millisecond)
}

func size(n int64) string {
	if n < 0 {
		return "-" + humanize.Bytes(uint64(-n))
	}
	return humanize.Bytes(uint64(n))
}
