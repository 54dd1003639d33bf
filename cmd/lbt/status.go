package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/jackc/pglogrepl"

	"lbt/catalog"
	"lbt/ingest"
)

type statusCmd struct {
	Format string `enum:"table,json" default:"table" placeholder:"FORMAT" help:"Output format: table or json (default: ${default})."`
}

func (cmd *statusCmd) Help() string {
	return `Says whether the backup is healthy: how far the archive reaches, how far it is behind the source, how much WAL its slot keeps on the source, and which tables have no basebackup yet. Answers from the catalog; the source is asked too when it can be reached. Read-only.`
}

type statusReport struct {
	ArchiveDir        string    `json:"archive_dir"`
	ArchivedLSN       string    `json:"archived_lsn,omitempty"`
	LastCommit        time.Time `json:"last_commit,omitempty"`
	LastFlush         time.Time `json:"last_flush,omitempty"`
	Epochs            int       `json:"epochs"`
	EpochReason       string    `json:"epoch_reason,omitempty"`
	Tables            int       `json:"tables"`
	TablesWithoutBase int       `json:"tables_without_basebackup"`
	Transactions      int64     `json:"transactions"`
	Changes           int64     `json:"changes"`
	SegmentBytes      int64     `json:"segment_bytes"`
	Basebackups       int       `json:"basebackups"`
	BasebackupBytes   int64     `json:"basebackup_bytes"`
	SourceReachable   bool      `json:"source_reachable"`
	SourceError       string    `json:"source_error,omitempty"`
	SlotExists        bool      `json:"slot_exists"`
	SlotActive        bool      `json:"slot_active"`
	LagBytes          int64     `json:"lag_bytes"`
	RetainedWALBytes  int64     `json:"retained_wal_bytes"`
}

func (cmd *statusCmd) Run(ctx context.Context, g *Globals) error {
	cfg, err := g.loadConfig()
	if err != nil {
		return err
	}
	cat, err := catalog.OpenReadOnly(ctx, cfg.ArchiveDir)
	if err != nil {
		return err
	}
	defer cat.Close()
	s, err := cat.Summarize(ctx)
	if err != nil {
		return err
	}
	r := statusReport{ArchiveDir: cfg.ArchiveDir, Epochs: len(s.Epochs), Tables: s.Tables, TablesWithoutBase: s.TablesWithoutBase,
		Transactions: s.Transactions, Changes: s.Changes, SegmentBytes: s.SegmentBytes, Basebackups: s.Basebackups, BasebackupBytes: s.BasebackupBytes}
	if s.HasPosition {
		r.ArchivedLSN = pglogrepl.LSN(s.Position.EndLSN).String()
		r.LastCommit, r.LastFlush = s.Position.CommitTime, s.UpdatedAt
	}
	if n := len(s.Epochs); n > 1 {
		r.EpochReason = s.Epochs[n-1].Reason
	}
	if pc, err := cfg.ConnConfig(); err == nil {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		slot, err := ingest.Slot(sctx, pc, cfg.SlotName)
		cancel()
		if err != nil {
			r.SourceError = cfg.RedactSecrets(err.Error())
		} else {
			r.SourceReachable, r.SlotExists, r.SlotActive, r.RetainedWALBytes = true, slot.Exists, slot.Active, slot.RetainedWAL
			if slot.Exists && slot.Current > slot.Confirmed {
				r.LagBytes = int64(slot.Current - slot.Confirmed)
			}
		}
	}
	if cmd.Format == "json" {
		return json.NewEncoder(g.stdout).Encode(r)
	}
	w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "archive\t%s\n", r.ArchiveDir)
	fmt.Fprintf(w, "archived up to\t%s (last commit %s, last flush %s)\n", r.ArchivedLSN, fmtTime(r.LastCommit), fmtTime(r.LastFlush))
	fmt.Fprintf(w, "tables\t%d (%d without a basebackup yet)\n", r.Tables, r.TablesWithoutBase)
	fmt.Fprintf(w, "transactions\t%d (%d row changes, %d bytes in segments)\n", r.Transactions, r.Changes, r.SegmentBytes)
	fmt.Fprintf(w, "basebackups\t%d (%d bytes)\n", r.Basebackups, r.BasebackupBytes)
	if r.EpochReason != "" {
		fmt.Fprintf(w, "history gap\t%d epochs; latest: %s\n", r.Epochs, r.EpochReason)
	}
	switch {
	case !r.SourceReachable:
		fmt.Fprintf(w, "source\tnot reachable: %s\n", r.SourceError)
	case !r.SlotExists:
		fmt.Fprintf(w, "slot\t%s does not exist on the source (lbt backup creates it)\n", cfg.SlotName)
	default:
		state := "inactive: lbt backup is not running"
		if r.SlotActive {
			state = "active"
		}
		fmt.Fprintf(w, "slot\t%s %s, %d bytes behind, keeps %d bytes of WAL on the source\n", cfg.SlotName, state, r.LagBytes, r.RetainedWALBytes)
	}
	return w.Flush()
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Local().Format("2006-01-02 15:04:05 MST")
}
