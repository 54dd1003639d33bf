package restore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"lbt/catalog"
	"lbt/schema"
)

// ErrNotRestorable reports a target the archive cannot restore: before the
// first basebackup, in a purged range or a gap of the history, or beyond
// what is archived. The error's text names the ranges that can be restored.
var ErrNotRestorable = errors.New("cannot restore to that moment")

// plan is what a restore reads and where it stops.
type plan struct {
	tableID int64
	source  schema.Table // the table as it was named at the target

	// upto: the restore applies exactly the transactions that committed at
	// or before this LSN. It is the commit LSN of the target transaction,
	// or a position between transactions.
	upto   uint64
	at     time.Time // the target moment (requested time, or the commit time at upto)
	target string    // the target as the operator gave it, for messages

	bb       catalog.Basebackup
	blobs    []catalog.Blob
	versions []catalog.SchemaVersion
	shapes   *shapes
	keyCols  []int

	txs        int64  // transactions of the table applied
	expected   counts // changes the catalog's tx rows say are in [bb.LSN, upto]
	lastTrunc  uint64 // commit LSN of the last transaction with a TRUNCATE, 0 for none
	afterTrunc int64  // inserts minus deletes of the transactions after it
	deltaBytes int64
	changes    int64
}

// planner resolves a restore's target against the catalog.
type planner struct {
	cat       *catalog.Catalog
	pos       catalog.Position
	reachedAt time.Time             // the archive is known complete up to this moment
	epochs    []catalog.EpochRecord // by start LSN
	gaps      []gap
	spans     map[int64][]catalog.TableGap // inexact spans by table, read when first needed
}

// spansOf returns a table's inexact spans: stretches of its history that
// no restore can reach exactly, because the source changed its rows in a
// way the stream does not carry (docs/RESTORE.md).
func (p *planner) spansOf(ctx context.Context, tableID int64) ([]catalog.TableGap, error) {
	if s, ok := p.spans[tableID]; ok {
		return s, nil
	}
	s, err := p.cat.TableGaps(ctx, tableID)
	if err != nil {
		return nil, err
	}
	if p.spans == nil {
		p.spans = map[int64][]catalog.TableGap{}
	}
	p.spans[tableID] = s
	return s, nil
}

// spanEnd is the first position after an inexact span: the consistent
// point of the basebackup that closed it; the end of LSNs while it is open.
func spanEnd(g catalog.TableGap) uint64 {
	if g.Open() {
		return math.MaxUint64
	}
	return g.ToLSN
}

// inSpanLSN reports whether the state right after upto lies inside the
// span: after the change, and before the basebackup that holds it.
func inSpanLSN(g catalog.TableGap, upto uint64) bool { return g.FromLSN <= upto && upto+1 < spanEnd(g) }

// inSpanTime reports whether a target time lies inside the span: after the
// commit of the table's last transaction before the change, and before the
// basebackup that holds it finished.
func inSpanTime(g catalog.TableGap, t time.Time) bool {
	return t.After(g.FromTime) && (g.Open() || t.Before(g.ToTime))
}

// spanCrosses reports whether applying the table's transactions with commit
// LSN in [lo, hi) to a basebackup would pass through the span.
func spanCrosses(g catalog.TableGap, lo, hi uint64) bool { return lo < spanEnd(g) && g.FromLSN < hi }

// describeSpan writes a span for an error: what happened, where, and the
// nearest moments on either side that can be restored.
func describeSpan(g catalog.TableGap, table string) string {
	before := fmt.Sprintf("the nearest restorable moments are before it, up to LSN %s (%s)", catalog.FormatLSN(max(g.FromLSN, 1)-1), formatTime(g.FromTime))
	after := fmt.Sprintf("and after it once the table's next basebackup completes (lbt backup takes one at once; lbt basebackup --table %s takes one now)", table)
	end := "its next basebackup"
	if !g.Open() {
		end = fmt.Sprintf("LSN %s (%s, the basebackup that holds the change)", catalog.FormatLSN(g.ToLSN), formatTime(g.ToTime))
		after = fmt.Sprintf("and from LSN %s (%s) on", catalog.FormatLSN(g.ToLSN), formatTime(g.ToTime))
	}
	return fmt.Sprintf("it is inside a span of the table's history that cannot be restored exactly, from LSN %s (after %s) to %s: %s; %s %s",
		catalog.FormatLSN(g.FromLSN), formatTime(g.FromTime), end, g.Reason, before, after)
}

// gap is a stretch of history that no epoch holds: after the last archived
// transaction of one epoch and before the next epoch started. The old epoch
// is known complete only up to its last archived transaction; the new one
// from its start. Transactions that committed in between may be lost.
type gap struct {
	lastLSN  uint64    // commit LSN of the old epoch's last archived transaction
	lastAt   time.Time // its commit time
	startLSN uint64    // the new epoch's start
	startAt  time.Time // when it started
	epoch    int64     // the new epoch
}

// inLSN reports whether the state right after upto lies in the gap: it
// would need a transaction the gap may have lost. The state at the new
// epoch's start (upto = startLSN-1) is not in the gap: a basebackup of the
// new epoch with no change of the table before it reaches it.
func (g gap) inLSN(upto uint64) bool { return g.lastLSN < upto && upto+1 < g.startLSN }

// inTime reports whether a target time lies in the gap.
func (g gap) inTime(t time.Time) bool { return t.After(g.lastAt) && t.Before(g.startAt) }

// crosses reports whether applying the transactions with commit LSN in
// [lo, hi) would need one the gap may have lost.
func (g gap) crosses(lo, hi uint64) bool { return lo < g.startLSN && g.lastLSN+1 < hi }

func (g gap) String() string {
	return fmt.Sprintf("the history has a gap between the last archived transaction of the previous epoch (LSN %s, committed at %s) and the start of epoch %d (LSN %s, at %s): changes committed in between were not archived",
		catalog.FormatLSN(g.lastLSN), formatTime(g.lastAt), g.epoch, catalog.FormatLSN(g.startLSN), formatTime(g.startAt))
}

func newPlanner(ctx context.Context, cat *catalog.Catalog) (*planner, error) {
	p := &planner{cat: cat}
	pos, ok, err := cat.Position(ctx)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: the archive %s holds no transaction yet (is lbt backup running?)", ErrNotRestorable, cat.Dir())
	}
	p.pos = pos
	updated, err := cat.PositionUpdatedAt(ctx)
	if err != nil {
		return nil, err
	}
	// The daemon records its position also when the stream tells it that
	// nothing happened, so the archive is complete up to the later of the
	// last commit and that record.
	p.reachedAt = pos.CommitTime
	if updated.After(p.reachedAt) {
		p.reachedAt = updated
	}
	if p.epochs, err = cat.EpochRecords(ctx); err != nil {
		return nil, err
	}
	slices.SortStableFunc(p.epochs, func(a, b catalog.EpochRecord) int { return cmp.Compare(a.StartLSN, b.StartLSN) })
	if p.gaps, err = p.findGaps(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// findGaps lists the gaps between consecutive epochs.
func (p *planner) findGaps(ctx context.Context) ([]gap, error) {
	var out []gap
	for i := 1; i < len(p.epochs); i++ {
		prev, e := p.epochs[i-1], p.epochs[i]
		g := gap{startLSN: e.StartLSN, startAt: e.StartedAt, epoch: e.ID}
		var last catalog.TxStamp
		ok := false
		if e.StartLSN > prev.StartLSN {
			var err error
			if last, ok, err = p.cat.NewestTx(ctx, prev.StartLSN, e.StartLSN-1); err != nil {
				return nil, err
			}
		}
		if ok {
			g.lastLSN, g.lastAt = last.CommitLSN, last.CommitTime
		} else {
			// Nothing archived in the old epoch (or it was purged): it is
			// known complete from its start only.
			g.lastLSN, g.lastAt = prev.StartLSN, prev.StartedAt
			if g.lastLSN > 0 {
				g.lastLSN--
			}
		}
		out = append(out, g)
	}
	return out, nil
}

// resolveTarget turns the requested moment into upto.
func (p *planner) resolveTarget(ctx context.Context, o *Options) (upto uint64, at time.Time, desc string, err error) {
	switch {
	case o.Xid != 0:
		tx, ok, err := p.cat.TxByXid(ctx, o.Xid)
		if err != nil {
			return 0, at, "", err
		}
		if !ok {
			return 0, at, "", fmt.Errorf("%w: transaction %d is not in the archive: it changed no archived table, or it was purged", ErrNotRestorable, o.Xid)
		}
		return tx.CommitLSN, tx.CommitTime, fmt.Sprintf("transaction %d (committed at LSN %s)", o.Xid, catalog.FormatLSN(tx.CommitLSN)), nil

	case o.LSN != 0:
		desc = "LSN " + catalog.FormatLSN(o.LSN)
		if o.LSN > p.pos.EndLSN {
			return 0, at, "", fmt.Errorf("%w: %s is beyond the archive, which reaches %s (last commit at %s)", ErrNotRestorable, desc, catalog.FormatLSN(p.pos.EndLSN), formatTime(p.pos.CommitTime))
		}
		at, err = p.commitTimeAt(ctx, o.LSN)
		return o.LSN, at, desc, err

	case !o.Until.IsZero():
		desc = formatTime(o.Until)
		if o.Until.After(p.reachedAt) {
			return 0, at, "", fmt.Errorf("%w: %s is beyond the archive, which is complete up to %s (LSN %s); is lbt backup running and caught up?", ErrNotRestorable, desc, formatTime(p.reachedAt), catalog.FormatLSN(p.pos.EndLSN))
		}
		lsn, _, err := p.cat.LastCommitBefore(ctx, o.Until)
		if err != nil {
			return 0, at, "", err
		}
		upto = lsn
		// Every transaction that committed before an epoch's slot existed
		// has a commit LSN below the slot's start: when the target is after
		// the epoch began, they are all before it.
		for _, e := range p.epochs {
			if !e.StartedAt.After(o.Until) && e.StartLSN > 0 && e.StartLSN-1 > upto {
				upto = e.StartLSN - 1
			}
		}
		return upto, o.Until, desc, nil

	default:
		return p.pos.EndLSN, p.pos.CommitTime, "the latest archived state", nil
	}
}

// commitTimeAt is the commit time of the last archived transaction at or
// before lsn.
func (p *planner) commitTimeAt(ctx context.Context, lsn uint64) (time.Time, error) {
	t, ok, err := p.cat.NewestTx(ctx, 0, lsn)
	if err != nil || !ok {
		return time.Time{}, err
	}
	return t.CommitTime, nil
}

// findTable returns the table that was named name at the target: upto,
// and for a time target until. Tables that did not exist then (created
// after it, or dropped before it) are never taken. Of the tables that
// existed, the one whose schema version at the target has the name is
// taken (of several, the one whose version is newest); then one named so
// only by its first version, after the target
// (the archive saw it first later, and knows no other name for it then).
// A name that no table had at the target, but one existing table had at
// another time, finds that table, with a warning. A name that only
// dropped or later tables had is an error saying when they existed.
func (p *planner) findTable(ctx context.Context, name string, upto uint64, until time.Time) (int64, []catalog.SchemaVersion, string, error) {
	nsp, rel, err := schema.ParseName(name)
	if err != nil {
		return 0, nil, "", err
	}
	ids, err := p.cat.FindTable(ctx, nsp, rel)
	if err != nil {
		return 0, nil, "", err
	}
	quoted := schema.QuoteIdent(nsp) + "." + schema.QuoteIdent(rel)
	if len(ids) == 0 {
		return 0, nil, "", fmt.Errorf("table %s is not in the archive (lbt inspect tables lists the archived tables)", quoted)
	}
	var cands []nameCandidate
	for _, id := range ids {
		versions, err := p.cat.SchemaVersions(ctx, id)
		if err != nil {
			return 0, nil, "", err
		}
		if len(versions) == 0 {
			continue
		}
		life, err := p.tableLife(ctx, id)
		if err != nil {
			return 0, nil, "", err
		}
		cands = append(cands, nameCandidate{id: id, versions: versions, life: life})
	}
	c, warn, err := pickTable(cands, nsp, rel, upto, until)
	if err == nil {
		return c.id, c.versions, warn, nil
	}
	var gone *goneError
	if !errors.As(err, &gone) {
		return 0, nil, "", err
	}
	return 0, nil, "", p.goneError(ctx, gone)
}

// nameCandidate is a table that had a name at some time.
type nameCandidate struct {
	id       int64
	versions []catalog.SchemaVersion
	life     catalog.TableLife
}

// goneError says that the only tables that had a name did not exist at
// the target.
type goneError struct {
	name  string
	cands []nameCandidate
	pres  []presence
}

func (e *goneError) Error() string { return "table " + e.name + " did not exist at the target" }

// pickTable is findTable's choice among the tables that had the name
// nsp.rel at some time.
func pickTable(cands []nameCandidate, nsp, rel string, upto uint64, until time.Time) (nameCandidate, string, error) {
	quoted := schema.QuoteIdent(nsp) + "." + schema.QuoteIdent(rel)
	var direct, first, other []nameCandidate
	gone := &goneError{name: quoted}
	for _, c := range cands {
		if pr := presenceAt(c.life, upto, until); pr != existed {
			gone.cands, gone.pres = append(gone.cands, c), append(gone.pres, pr)
			continue
		}
		v, ok := versionBefore(c.versions, upto)
		switch {
		case ok && v.Schema == nsp && v.Name == rel:
			direct = append(direct, c)
		case !ok && c.versions[0].Schema == nsp && c.versions[0].Name == rel:
			first = append(first, c)
		default:
			other = append(other, c)
		}
	}
	if len(direct) == 0 && len(first) == 1 && first[0].life.CreatedLSN == 0 && slices.ContainsFunc(gone.pres, func(p presence) bool { return p == wasDropped || p == maybeDropped }) {
		// Another table had the name and was dropped: this one was created
		// after that, at a moment lbt does not know, so that it may not
		// have existed at the target.
		gone.cands, gone.pres = append(gone.cands, first[0]), append(gone.pres, createdUnknown)
		return nameCandidate{}, "", gone
	}
	if len(direct) > 1 {
		// Names are unique at any moment: of the tables whose version at
		// the target has the name, the one that showed it last had it
		// (the others were renamed or dropped before, unseen).
		slices.SortFunc(direct, func(a, b nameCandidate) int {
			av, _ := versionBefore(a.versions, upto)
			bv, _ := versionBefore(b.versions, upto)
			return cmp.Compare(bv.FromLSN, av.FromLSN)
		})
		av, _ := versionBefore(direct[0].versions, upto)
		bv, _ := versionBefore(direct[1].versions, upto)
		if av.FromLSN != bv.FromLSN {
			direct = direct[:1]
		}
	}
	for _, set := range [][]nameCandidate{direct, first} {
		switch len(set) {
		case 0:
			continue
		case 1:
			return set[0], "", nil
		}
		return nameCandidate{}, "", fmt.Errorf("several tables in the archive were named %s at the target (lbt inspect tables lists them): give a target when only one had that name", quoted)
	}
	switch {
	case len(other) == 1:
		return other[0], fmt.Sprintf("no table was named %s at the target; restoring the table that had that name at another time, named %s at the target",
			quoted, versionAt(other[0].versions, upto).QualifiedName()), nil
	case len(other) > 1:
		return nameCandidate{}, "", fmt.Errorf("no table was named %s at the target, and several tables had that name at other times: give a target when it had that name", quoted)
	}
	return nameCandidate{}, "", gone
}

// presence is whether a table existed at a restore's target.
type presence int

const (
	existed        presence = iota
	notCreated              // created after the target
	wasDropped              // dropped at or before the target
	maybeDropped            // dropped unseen, somewhere between its last sign of life and when lbt found it gone: the target lies in that span
	createdUnknown          // created at a moment lbt does not know, and first seen after the target
)

// presenceAt says whether a table with life l existed right after the
// transactions up to upto (for a time target, at until). An exact DROP is
// a transaction of the archive, placed by upto like any other; a drop lbt
// only found later is placed by the position or the time of its two sides.
func presenceAt(l catalog.TableLife, upto uint64, until time.Time) presence {
	switch {
	case l.CreatedLSN != 0 && upto < l.CreatedLSN && l.CreatedExact:
		return notCreated
	case l.CreatedLSN != 0 && upto < l.CreatedLSN:
		return createdUnknown
	case !l.Dropped():
		return existed
	case l.DropExact:
		if upto >= l.DroppedLSN {
			return wasDropped
		}
		return existed
	case !until.IsZero():
		if !until.After(l.AliveAt) {
			return existed
		}
		if !until.Before(l.DroppedAt) {
			return wasDropped
		}
		return maybeDropped
	case upto <= l.AliveLSN:
		return existed
	case upto >= l.DroppedLSN:
		return wasDropped
	}
	return maybeDropped
}

// tableLife is what the catalog knows of when the table existed, with its
// last archived change as a sign of life: a drop found late may have been
// recorded before the stream brought the table's last changes.
func (p *planner) tableLife(ctx context.Context, id int64) (catalog.TableLife, error) {
	l, err := p.cat.TableLife(ctx, id)
	if err != nil || !l.Dropped() || l.DropExact {
		return l, err
	}
	lsn, at, err := p.cat.TableLastChange(ctx, id)
	if err != nil {
		return l, err
	}
	if lsn > l.AliveLSN && lsn < l.DroppedLSN {
		l.AliveLSN = lsn
	}
	if !at.IsZero() && at.After(l.AliveAt) && at.Before(l.DroppedAt) {
		l.AliveAt = at
	}
	return l, nil
}

// goneError turns a goneError into the message for the operator: when
// each table of that name was created or dropped, and the moments it can
// be restored to.
func (p *planner) goneError(ctx context.Context, g *goneError) error {
	var parts []string
	for i, c := range g.cands {
		ws, err := p.tableWindows(ctx, c)
		if err != nil {
			return err
		}
		l := c.life
		var what string
		switch g.pres[i] {
		case notCreated:
			what = fmt.Sprintf("table %s was created at %s (LSN %s), after the target", g.name, formatTime(l.CreatedAt), catalog.FormatLSN(l.CreatedLSN))
		case wasDropped:
			if l.DropExact {
				what = fmt.Sprintf("table %s was dropped at %s (LSN %s)", g.name, formatTime(l.DroppedAt), catalog.FormatLSN(l.DroppedLSN))
			} else {
				what = fmt.Sprintf("table %s was dropped between %s and %s (LSN %s and %s)", g.name,
					formatTime(l.AliveAt), formatTime(l.DroppedAt), catalog.FormatLSN(l.AliveLSN), catalog.FormatLSN(l.DroppedLSN))
			}
		case createdUnknown:
			what = fmt.Sprintf("table %s was created before its first change at LSN %s, after the target, at a moment the archive does not hold (lbt setup --capture-ddl records it), so whether it existed at the target is not known",
				g.name, catalog.FormatLSN(c.versions[0].FromLSN))
		case maybeDropped:
			what = fmt.Sprintf("table %s was dropped at an unknown moment between %s and %s (LSN %s and %s), and the target lies in that span: "+
				"lbt found it gone without seeing the DROP (lbt setup --capture-ddl records it)", g.name,
				formatTime(l.AliveAt), formatTime(l.DroppedAt), catalog.FormatLSN(l.AliveLSN), catalog.FormatLSN(l.DroppedLSN))
		}
		parts = append(parts, what+"; "+describeWindows(g.name, ws))
	}
	return fmt.Errorf("%w: %s", ErrNotRestorable, strings.Join(parts, "; "))
}

// tableWindows are the windows a table can be restored in, within its life.
func (p *planner) tableWindows(ctx context.Context, c nameCandidate) ([]window, error) {
	bbs, err := p.cat.Basebackups(ctx, c.id)
	if err != nil {
		return nil, err
	}
	purged, err := p.purgedBefore(ctx, c.id)
	if err != nil {
		return nil, err
	}
	ws, err := p.windows(ctx, bbs, purged)
	if err != nil {
		return nil, err
	}
	return p.lifeWindows(ctx, ws, c.life, purged)
}

// clipWindows is lifeWindows for the table id.
func (p *planner) clipWindows(ctx context.Context, id int64, ws []window, purged uint64) ([]window, error) {
	l, err := p.tableLife(ctx, id)
	if err != nil {
		return nil, err
	}
	return p.lifeWindows(ctx, ws, l, purged)
}

// lifeWindows adds to the basebackups' windows the one that starts empty
// at the table's creation (emptyStart), and ends them at its drop.
func (p *planner) lifeWindows(ctx context.Context, ws []window, l catalog.TableLife, purged uint64) ([]window, error) {
	if c := l.CreatedLSN; c != 0 && purged <= c && p.complete(c, c) {
		w := window{from: c, to: p.pos.EndLSN, fromAt: l.CreatedAt, toAt: p.reachedAt}
		for _, e := range p.epochs {
			if e.StartLSN > c && e.StartLSN-1 < w.to {
				w.to = e.StartLSN - 1
				t, err := p.commitTimeAt(ctx, w.to)
				if err != nil {
					return nil, err
				}
				w.toAt = t
			}
		}
		merged := []window{w}
		for _, o := range ws {
			if last := &merged[len(merged)-1]; o.from <= last.to+1 {
				if o.to > last.to {
					last.to, last.toAt = o.to, o.toAt
				}
				continue
			}
			merged = append(merged, o)
		}
		ws = merged
	}
	return clipToLife(ws, l), nil
}

// clipToLife ends the windows where the table is last known to have
// existed, when it was dropped.
func clipToLife(ws []window, l catalog.TableLife) []window {
	if !l.Dropped() {
		return ws
	}
	var out []window
	for _, w := range ws {
		if w.from > l.AliveLSN {
			continue
		}
		if w.to > l.AliveLSN {
			w.to = l.AliveLSN
		}
		if w.toAt.After(l.AliveAt) {
			w.toAt = l.AliveAt
		}
		out = append(out, w)
	}
	return out
}

// versionAt is the schema version in force at lsn: the last one from at or
// before it, else the first.
func versionAt(versions []catalog.SchemaVersion, lsn uint64) catalog.SchemaVersion {
	if v, ok := versionBefore(versions, lsn); ok {
		return v
	}
	return versions[0]
}

// versionBefore is the last schema version from at or before lsn; ok is
// false when the first one is after it.
func versionBefore(versions []catalog.SchemaVersion, lsn uint64) (v catalog.SchemaVersion, ok bool) {
	for _, s := range versions {
		if s.FromLSN <= lsn {
			v, ok = s, true
		}
	}
	return v, ok
}

// purgedBefore is the LSN before which the table's deltas were purged.
func (p *planner) purgedBefore(ctx context.Context, tableID int64) (uint64, error) {
	return p.cat.PurgedBefore(ctx, tableID)
}

// complete reports whether the archive holds every transaction that
// committed in [lo, hi): an epoch began at or before lo, and no gap between
// epochs lies inside the range.
func (p *planner) complete(lo, hi uint64) bool {
	covered := false
	for _, e := range p.epochs {
		if e.StartLSN <= lo {
			covered = true
		}
	}
	for _, g := range p.gaps {
		if g.crosses(lo, hi) {
			return false
		}
	}
	return covered
}

// chooseBasebackup returns the newest basebackup from which the state at
// upto can be built. The state right after upto is the basebackup plus the
// deltas in [bb.LSN, upto]; a basebackup taken after upto also gives it
// when the table had no transaction in between.
func (p *planner) chooseBasebackup(ctx context.Context, tableID int64, bbs []catalog.Basebackup, upto, purged uint64) (catalog.Basebackup, bool, error) {
	spans, err := p.spansOf(ctx, tableID)
	if err != nil {
		return catalog.Basebackup{}, false, err
	}
next:
	for i := len(bbs) - 1; i >= 0; i-- {
		b := bbs[i]
		lo, hi := min(b.LSN, upto+1), max(b.LSN, upto+1)
		if lo < purged || !p.complete(lo, hi) || hi-1 > p.pos.EndLSN {
			continue
		}
		// No basebackup is brought across a change the stream does not
		// carry, forward or back.
		for _, g := range spans {
			if spanCrosses(g, lo, hi) {
				continue next
			}
		}
		if b.LSN > upto+1 {
			changed, err := p.cat.HasTableTx(ctx, tableID, upto+1, b.LSN-1)
			if err != nil {
				return b, false, err
			}
			if changed {
				continue
			}
		}
		return b, true, nil
	}
	return catalog.Basebackup{}, false, nil
}

// emptyStart is the start of the history of a table created inside it: a
// virtual basebackup of no rows at the commit of the creating transaction
// (rel_life.created_lsn), which every change of the table follows in the
// stream. It reaches upto when that is at or after the creation and the
// history from the creation to upto is complete (no gap, nothing purged).
// Its definition is the table's first schema version: columns, types and
// primary key. It has no file: Path is empty and ID 0.
func (p *planner) emptyStart(ctx context.Context, tableID int64, versions []catalog.SchemaVersion, upto, purged uint64) (catalog.Basebackup, bool, error) {
	life, err := p.tableLife(ctx, tableID)
	if err != nil {
		return catalog.Basebackup{}, false, err
	}
	c := life.CreatedLSN
	if c == 0 || len(versions) == 0 || upto < c || purged > c || !p.complete(c, upto+1) || upto > p.pos.EndLSN {
		return catalog.Basebackup{}, false, nil
	}
	if life.Dropped() && upto > life.AliveLSN {
		return catalog.Basebackup{}, false, nil
	}
	v := versionAt(versions, c)
	def := schema.Definition{Table: v.Table}
	for _, col := range v.Columns {
		def.Columns = append(def.Columns, schema.ColumnDef{Name: col.Name, Type: col.TypeName, NotNull: slices.Contains(v.PrimaryKey, col.Name)})
	}
	return catalog.Basebackup{TableID: tableID, LSN: c, Definition: def, Reason: "empty at its creation",
		StartedAt: life.CreatedAt, FinishedAt: life.CreatedAt}, true, nil
}

// window is a stretch of history a restore can reach.
type window struct {
	from, to         uint64
	fromAt, toAt     time.Time
	fromBasebackupID int64
}

// windows lists the stretches of the table's history that can be restored.
func (p *planner) windows(ctx context.Context, bbs []catalog.Basebackup, purged uint64) ([]window, error) {
	var out []window
	var spans []catalog.TableGap
	if len(bbs) > 0 {
		var err error
		if spans, err = p.spansOf(ctx, bbs[0].TableID); err != nil {
			return nil, err
		}
	}
bases:
	for _, b := range bbs {
		if b.LSN < purged || b.LSN > p.pos.EndLSN+1 || !p.complete(b.LSN, b.LSN) {
			continue
		}
		for _, g := range spans {
			if g.FromLSN < b.LSN && b.LSN < spanEnd(g) {
				continue bases // taken inside an inexact span: it may not hold the change
			}
		}
		// From the time the basebackup finished, every time is restorable
		// (a little earlier too, unless the table changed meanwhile).
		w := window{from: b.LSN, to: p.pos.EndLSN, fromAt: b.FinishedAt, toAt: p.reachedAt, fromBasebackupID: b.ID}
		// A window ends at the last archived transaction before a gap.
		for _, g := range p.gaps {
			if g.startLSN > b.LSN && g.lastLSN < w.to {
				w.to, w.toAt = g.lastLSN, g.lastAt
			}
		}
		// ... and at the table's last archived transaction before a change
		// the stream does not carry.
		for _, g := range spans {
			if g.FromLSN >= b.LSN && g.FromLSN > 0 && g.FromLSN-1 < w.to {
				w.to, w.toAt = g.FromLSN-1, g.FromTime
			}
		}
		if w.to+1 < w.from {
			continue // taken inside a gap: it reaches no target outside one, and nothing is inside
		}
		if n := len(out); n > 0 && out[n-1].to+1 >= w.from {
			if w.to > out[n-1].to {
				out[n-1].to, out[n-1].toAt = w.to, w.toAt
			}
			continue
		}
		out = append(out, w)
	}
	return out, nil
}

func describeWindows(table string, ws []window) string {
	if len(ws) == 0 {
		return fmt.Sprintf("%s has no basebackup that the archive can use (take one with lbt basebackup --table %s)", table, table)
	}
	var parts []string
	for _, w := range ws {
		parts = append(parts, fmt.Sprintf("from %s to %s (LSN %s to %s)", formatTime(w.fromAt), formatTime(w.toAt), catalog.FormatLSN(w.from), catalog.FormatLSN(w.to)))
	}
	return fmt.Sprintf("%s can be restored %s", table, strings.Join(parts, "; and "))
}

// makePlan resolves everything a restore needs from the catalog.
func makePlan(ctx context.Context, cat *catalog.Catalog, o *Options) (*plan, []string, error) {
	p, err := newPlanner(ctx, cat)
	if err != nil {
		return nil, nil, err
	}
	var warnings []string
	pl := &plan{}
	if pl.upto, pl.at, pl.target, err = p.resolveTarget(ctx, o); err != nil {
		return nil, nil, err
	}
	id, versions, warn, err := p.findTable(ctx, o.Table, pl.upto, o.Until)
	if err != nil {
		return nil, nil, err
	}
	if warn != "" {
		warnings = append(warnings, warn)
	}
	pl.tableID, pl.versions = id, versions
	bbs, err := cat.Basebackups(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	purged, err := p.purgedBefore(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if !o.Until.IsZero() {
		// Every transaction that committed before a basebackup's snapshot
		// did so before the basebackup finished: for a later target time,
		// they are all before the target.
		for _, b := range bbs {
			if !b.FinishedAt.After(o.Until) && b.LSN > 0 && b.LSN-1 > pl.upto {
				pl.upto = b.LSN - 1
			}
		}
	}
	name := versionAt(versions, pl.upto).QualifiedName()
	if err := p.refuseInexact(ctx, o, pl, name, bbs, purged); err != nil {
		return nil, nil, err
	}
	bb, ok, err := p.chooseBasebackup(ctx, id, bbs, pl.upto, purged)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		if bb, ok, err = p.emptyStart(ctx, id, versions, pl.upto, purged); err != nil {
			return nil, nil, err
		}
		if ok {
			warnings = append(warnings, fmt.Sprintf("no basebackup: %s was created inside the archive's history, at %s (LSN %s), and is rebuilt from empty there",
				name, formatTime(bb.StartedAt), catalog.FormatLSN(bb.LSN)))
		}
	}
	if !ok {
		ws, err := p.windows(ctx, bbs, purged)
		if err != nil {
			return nil, nil, err
		}
		if ws, err = p.clipWindows(ctx, id, ws, purged); err != nil {
			return nil, nil, err
		}
		why := "it is before the first usable basebackup"
		switch {
		case purged > 0 && pl.upto < purged:
			why = "the changes before it were purged"
		case len(bbs) > 0 && pl.upto+1 < bbs[0].LSN:
			why = "it is before the table's first basebackup"
		case len(ws) > 0 && pl.upto > ws[len(ws)-1].to:
			why = "it is beyond the archive"
		case len(bbs) > 0:
			why = "no basebackup reaches it (the history has a gap there, or was purged)"
		}
		return nil, nil, fmt.Errorf("%w %s: %s; %s", ErrNotRestorable, pl.target, why, describeWindows(name, ws))
	}
	pl.bb = bb
	if bb.TableID != id {
		return nil, nil, fmt.Errorf("%w: basebackup %d belongs to table %d, not %d", catalog.ErrCorrupt, bb.ID, bb.TableID, id)
	}
	// For the name and shape, the basebackup's definition counts as of its LSN.
	if pl.shapes, err = buildShapes(versions, bb.Definition.Table, bb.LSN, pl.upto); err != nil {
		return nil, nil, err
	}
	pl.source = pl.shapes.target
	pl.keyCols = keyColumns(pl.shapes.target)
	if bb.LSN <= pl.upto {
		if pl.blobs, err = cat.Blobs(ctx, id, bb.LSN, pl.upto); err != nil {
			return nil, nil, err
		}
		if err := p.countChanges(ctx, pl); err != nil {
			return nil, nil, err
		}
	}
	for _, b := range pl.blobs {
		pl.deltaBytes += int64(b.RawLength)
	}
	return pl, warnings, nil
}

// countChanges reads from the catalog's tx rows what the deltas of the
// plan hold.
func (p *planner) countChanges(ctx context.Context, pl *plan) error {
	return p.cat.EachTableTx(ctx, pl.tableID, pl.bb.LSN, pl.upto, func(t catalog.TableTx) error {
		pl.txs++
		pl.expected.Inserts += t.Inserts
		pl.expected.Updates += t.Updates
		pl.expected.Deletes += t.Deletes
		pl.expected.Truncates += t.Truncates
		pl.changes += t.Total()
		if t.Truncates > 0 {
			pl.lastTrunc, pl.afterTrunc = t.CommitLSN, 0
			return nil
		}
		pl.afterTrunc += t.Inserts - t.Deletes
		return nil
	})
}

// refuseInexact refuses a target that lies where the archive cannot be
// exact: in a gap between epochs, or in an inexact span of the table. A
// time target is in a gap when it is after the old epoch's last archived
// commit and before the new epoch started, in a span when it is after the
// span's start time and before its basebackup finished; a position when a
// transaction the gap may have lost, or the change of the span, is at or
// before it and the basebackup after them is not.
func (p *planner) refuseInexact(ctx context.Context, o *Options, pl *plan, name string, bbs []catalog.Basebackup, purged uint64) error {
	for _, g := range p.gaps {
		byTime := !o.Until.IsZero() && g.inTime(o.Until)
		if !byTime && !g.inLSN(pl.upto) {
			continue
		}
		ws, err := p.windows(ctx, bbs, purged)
		if err != nil {
			return err
		}
		return fmt.Errorf("%w %s: %s; %s", ErrNotRestorable, pl.target, g, describeWindows(name, ws))
	}
	spans, err := p.spansOf(ctx, pl.tableID)
	if err != nil {
		return err
	}
	for _, g := range spans {
		byTime := !o.Until.IsZero() && inSpanTime(g, o.Until)
		if !byTime && !inSpanLSN(g, pl.upto) {
			continue
		}
		ws, err := p.windows(ctx, bbs, purged)
		if err != nil {
			return err
		}
		return fmt.Errorf("%w %s: %s; %s", ErrNotRestorable, pl.target, describeSpan(g, name), describeWindows(name, ws))
	}
	return nil
}

// formatTime writes a moment for messages, in local time with its offset.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "(unknown time)"
	}
	return t.Local().Format("2006-01-02 15:04:05.999999Z07:00")
}
