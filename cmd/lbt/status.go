package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/jackc/pglogrepl"

	"lbt/config"
	"lbt/ship"
	"lbt/source"
	"lbt/status"
)

type statusCmd struct {
	Format  string           `enum:"table,json" default:"table" placeholder:"FORMAT" help:"Output format: table or json (default: ${default}); the JSON fields are documented in docs/STATUS.md."`
	WarnLag *config.ByteSize `placeholder:"SIZE" help:"WARNING when the slot retains this much WAL on the source, like 512MB or 1GiB (default: config statusWarnLag, 1 GiB unless set); 0 is off."`
	CritLag *config.ByteSize `placeholder:"SIZE" help:"CRITICAL when the slot retains this much WAL (default: config statusCritLag, 8 GiB unless set); 0 is off."`
	WarnAge *time.Duration   `placeholder:"DURATION" help:"WARNING when the archive last advanced this long ago (default: config statusWarnAge, 15m unless set); 0 is off."`
	CritAge *time.Duration   `placeholder:"DURATION" help:"CRITICAL when the archive last advanced this long ago (default: config statusCritAge, 1h unless set); 0 is off."`
}

func (cmd *statusCmd) Help() string {
	return `Says whether the backup is healthy, as a Nagios plugin does: the first line is the state and why ("CRITICAL: slot lbt retains 3.1 GB of WAL (crit 1.1 GB)"), then how far the archive reaches, how far it is behind the source, how much WAL its slot keeps there (and the slot's wal_status and safe_wal_size: past max_slot_wal_keep_size the server drops the slot), and each table's newest basebackup. Read-only.

The archive "advances" when a transaction is archived, and also when the daemon confirms its position on an idle source: its age is the time since either.

Exit status (Nagios plugin conventions; this replaces lbt's usual statuses for this command):

    0    OK
    1    WARNING: a warning threshold is passed, the slot is inactive, or the slot nears max_slot_wal_keep_size
    2    CRITICAL: a critical threshold is passed, the slot is missing, or it lost or is about to lose WAL
    3    UNKNOWN: the source or the archive cannot be read, or a usage error`
}

func (cmd *statusCmd) Run(ctx context.Context, g *Globals) error {
	cfg, err := g.loadConfig()
	if err != nil {
		return err
	}
	th := status.Thresholds{WarnLag: int64(cfg.StatusWarnLag), CritLag: int64(cfg.StatusCritLag), WarnAge: cfg.StatusWarnAge, CritAge: cfg.StatusCritAge}
	if cmd.WarnLag != nil {
		th.WarnLag = int64(*cmd.WarnLag)
	}
	if cmd.CritLag != nil {
		th.CritLag = int64(*cmd.CritLag)
	}
	if cmd.WarnAge != nil {
		th.WarnAge = *cmd.WarnAge
	}
	if cmd.CritAge != nil {
		th.CritAge = *cmd.CritAge
	}
	r, err := gatherStatus(ctx, cfg)
	if err != nil {
		// No archive to judge: UNKNOWN, said as a plugin says it.
		fmt.Fprintf(g.stdout, "UNKNOWN: %s\n", oneLine(err.Error()))
		return exitStatus(status.Unknown)
	}
	status.Judge(r, th, time.Now())
	if cmd.Format == "json" {
		if err := json.NewEncoder(g.stdout).Encode(r); err != nil {
			return err
		}
		return exitStatus(r.State)
	}
	fmt.Fprintln(g.stdout, r.Line())
	w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "archive\t%s\n", r.ArchiveDir)
	fmt.Fprintf(w, "archived up to\t%s (last commit %s, last advanced %s)\n", r.ArchivedLSN, fmtTimePtr(r.LastCommit), fmtTimePtr(r.LastAdvanced))
	fmt.Fprintf(w, "tables\t%d (%d without a basebackup yet)\n", r.Tables, r.TablesWithoutBase)
	fmt.Fprintf(w, "transactions\t%d (%d row changes, %d bytes in segments)\n", r.Transactions, r.Changes, r.SegmentBytes)
	fmt.Fprintf(w, "basebackups\t%d (%d bytes)\n", r.Basebackups, r.BasebackupBytes)
	if u := r.Upload; u != nil {
		switch {
		case u.UpdatedAt == nil:
			fmt.Fprintf(w, "upload	to %s: no daemon has uploaded from this archiveDir\n", u.ArchiveURL)
		default:
			fmt.Fprintf(w, "upload	to %s: covered up to %s, backlog %d files (%d bytes), oldest unshipped commit %s\n",
				u.ArchiveURL, u.CoveredLSN, u.BacklogFiles, u.BacklogBytes, fmtTimePtr(u.OldestUnshipped))
			if u.LastError != "" {
				fmt.Fprintf(w, "upload error\t%s\n", u.LastError)
			}
		}
	}
	if r.EpochReason != "" {
		fmt.Fprintf(w, "history gap\t%d epochs; latest: %s\n", r.Epochs, r.EpochReason)
	}
	switch {
	case !r.SourceReachable:
		fmt.Fprintf(w, "source\tnot reachable: %s\n", r.SourceError)
	case !r.SlotExists:
		fmt.Fprintf(w, "slot\t%s does not exist on the source (lbt backup creates it)\n", r.Slot)
	default:
		state := "inactive: lbt backup is not running"
		if r.SlotActive {
			state = "active"
		}
		fmt.Fprintf(w, "slot\t%s %s, %d bytes behind, keeps %d bytes of WAL on the source\n", r.Slot, state, r.LagBytes, r.RetainedWALBytes)
		if r.WALStatus != "" {
			safe := "no limit (max_slot_wal_keep_size = -1)"
			if r.SafeWALSize != nil {
				safe = fmt.Sprintf("%d bytes more before the server may drop the slot", *r.SafeWALSize)
			}
			fmt.Fprintf(w, "slot WAL\twal_status %s, %s\n", r.WALStatus, safe)
		}
	}
	for _, t := range r.TableStates {
		fmt.Fprintf(w, "table %s\tnewest basebackup %s\n", t.Table, fmtTimePtr(t.LastBasebackup))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return exitStatus(r.State)
}

// gatherStatus reads the figures of a report from the archive and, when it
// can be reached, the source. An archive that cannot be read is an error.
func gatherStatus(ctx context.Context, cfg config.Config) (*status.Report, error) {
	arch, err := openReadArchive(ctx, cfg, false)
	if err != nil {
		return nil, err
	}
	defer arch.Close()
	cat := arch.cat
	s, err := cat.Summarize(ctx)
	if err != nil {
		return nil, err
	}
	bases, err := cat.NewestBasebackups(ctx)
	if err != nil {
		return nil, err
	}
	r := &status.Report{ArchiveDir: cfg.ArchiveDir, Slot: cfg.SlotName, Epochs: len(s.Epochs), Tables: s.Tables, TablesWithoutBase: s.TablesWithoutBase,
		Transactions: s.Transactions, Changes: s.Changes, SegmentBytes: s.SegmentBytes, Basebackups: s.Basebackups, BasebackupBytes: s.BasebackupBytes}
	if s.HasPosition {
		r.ArchivedLSN = pglogrepl.LSN(s.Position.EndLSN).String()
		advanced := s.UpdatedAt
		if !s.Position.CommitTime.IsZero() {
			commit := s.Position.CommitTime
			r.LastCommit = &commit
			if commit.After(advanced) {
				advanced = commit
			}
		}
		if !advanced.IsZero() {
			r.LastAdvanced = &advanced
		}
	}
	if cfg.ArchiveURL != "" {
		r.Upload = &status.Upload{ArchiveURL: cfg.ArchiveURL}
		st, ok, err := ship.ReadState(cfg.ArchiveDir)
		if err != nil {
			return nil, err
		}
		if ok {
			r.Upload.CoveredLSN, r.Upload.BacklogFiles, r.Upload.BacklogBytes = st.CoveredLSN, st.BacklogFiles, st.BacklogBytes
			r.Upload.OldestUnshipped, r.Upload.LastError = st.OldestUnshipped, st.LastError
			at := st.UpdatedAt
			r.Upload.UpdatedAt = &at
		}
	}
	if n := len(s.Epochs); n > 1 {
		r.EpochReason = s.Epochs[n-1].Reason
	}
	for _, b := range bases {
		t := status.Table{Table: b.Name}
		if !b.FinishedAt.IsZero() {
			at := b.FinishedAt
			t.LastBasebackup = &at
		}
		r.TableStates = append(r.TableStates, t)
	}
	pc, err := cfg.ConnConfig()
	if err != nil {
		r.SourceError = err.Error()
		return r, nil
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	slot, err := source.ReadSlotState(sctx, pc, cfg.SlotName)
	cancel()
	if err != nil {
		r.SourceError = cfg.RedactSecrets(oneLine(err.Error()))
		return r, nil
	}
	r.SourceReachable, r.SlotExists, r.SlotActive, r.RetainedWALBytes = true, slot.Exists, slot.Active, slot.RetainedWAL
	r.WALStatus = slot.WALStatus
	if slot.Exists && slot.Current > slot.Confirmed {
		r.LagBytes = int64(slot.Current - slot.Confirmed)
	}
	if slot.SafeWALSize >= 0 && slot.WALStatus != "" {
		v := slot.SafeWALSize
		r.SafeWALSize = &v
	}
	if slot.MaxSlotWALKeepSize >= 0 {
		v := slot.MaxSlotWALKeepSize
		r.MaxSlotWALKeepSize = &v
	}
	return r, nil
}

func fmtTimePtr(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return fmtTime(*t)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Local().Format("2006-01-02 15:04:05 MST")
}
