package catalog

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"
)

// Metadata blobs make a segment self-describing: every catalog commit that
// adds blobs or transactions also appends, after its blobs and before the
// fsync, one blob of the reserved table id MetaTableID holding what the
// commit adds to the catalog beyond the blobs' own records: the blobs'
// ids, the schema versions they use, the transactions' end LSNs, commit
// times and origins, their logical messages, and the epochs. lbt repair
// --rebuild-catalog rebuilds the catalog from these (docs/FORMAT.md).
// A blob that no metadata blob lists was never committed.

// MetaTableID is the table id of metadata blobs; archive tables count from 1.
const MetaTableID = 0

// Metadata record tags. Part of the on-disk format.
const (
	metaArchive  = 'A'
	metaPosition = 'P'
	metaEpoch    = 'E'
	metaSchema   = 'V'
	metaBlobs    = 'B'
	metaTxs      = 'T'
	metaMessages = 'M'
	metaRewrite  = 'W'
	// Format 3, second revision: the commit's rows of the tables below.
	metaCarries   = 'K'
	metaGap       = 'G'
	metaStorage   = 'S'
	metaLife      = 'L'
	metaPartition = 'R'
	metaRunEnd    = 'U'
)

// Metadata is the content of one metadata blob.
type Metadata struct {
	Rewrite  bool           // written by purge with the blobs it copied: describes them, adds no commit
	Archive  *ArchiveRecord // with the epochs
	Position *MetaPosition  // the position the commit records
	Epochs   []EpochRecord
	Schemas  []MetaSchema
	Blobs    []MetaBlob // in segment order
	Txs      []MetaTx   // in commit LSN order
	Messages []MetaMessage
	// Carries says that the writer recorded, in the records below, every
	// row of table_gap, table_storage, rel_life and partition_tree its
	// commit added or changed. Without it (an lbt that did not write them)
	// a rebuild cannot know them, and is conservative.
	Carries    bool
	Gaps       []MetaGap
	Storage    []MetaStorage
	Lives      []MetaLife
	Partitions []MetaPartition
	RunEnds    []MetaRunEnd
}

// The records below mirror catalog rows column for column (times in
// microseconds as the rows hold them), so that a rebuild writes them back
// as they were. Each is the row's whole content after the commit: a later
// record of the same row replaces it.

// MetaGap is a table_gap row without its closing: a rebuild closes a span
// with the table's first basebackup whose consistent point is after
// SeenLSN, as closeTableGaps did (docs/FORMAT.md).
type MetaGap struct {
	ID, TableID int64
	FromLSN     uint64
	FromTime    int64 // 0 when unknown
	SeenLSN     uint64
	Reason      string
}

// MetaStorage is a table_storage row.
type MetaStorage struct {
	TableID     int64
	Relfilenode uint32
	Description string // JSON, as in the row
}

// MetaLife is a rel_life row. Created and Dropped say whether its
// creation columns and its drop columns are set.
type MetaLife struct {
	TableID      int64
	Created      bool
	CreatedLSN   uint64
	CreatedAt    int64
	CreatedExact bool
	Dropped      bool
	DroppedLSN   uint64
	DroppedAt    int64
	AliveLSN     uint64
	AliveAt      int64
	DropExact    bool
}

// MetaPartition is a partition_tree row: a run of looks at one tree.
type MetaPartition struct {
	ID               int64
	Root             uint32
	FromLSN, ToLSN   uint64
	FromTime, ToTime int64
	ViaRoot          bool
	Nodes            string // JSON, as in the row
}

// MetaRunEnd is where a run of looks at a partition tree, carried whole
// by an earlier record, has got to: the looks that find a tree unchanged
// only move its to_lsn, every few seconds, and are written now and then
// rather than at each look.
type MetaRunEnd struct {
	ID     int64
	ToLSN  uint64
	ToTime int64
}

const (
	lifeCreated      = 1
	lifeCreatedExact = 2
	lifeDropped      = 4
	lifeDropExact    = 8
)

// ArchiveRecord is the meta rows that name the source of the archive.
type ArchiveRecord struct {
	SystemID, Database, ServerVersion, CreatedAt string
}

// MetaPosition is the position a commit records: its epoch, the end LSN
// confirmed to the server once it is durable, and when (position.updated_at:
// the archive is known complete up to then).
type MetaPosition struct {
	Epoch  int64
	EndLSN uint64
	At     time.Time
}

// EpochRecord is an epoch row.
type EpochRecord struct {
	Epoch
	StartedAt time.Time
}

// MetaSchema is a schema version with its table's rel row.
type MetaSchema struct {
	SchemaVersion
	OID         uint32
	RelFirstLSN uint64
}

// MetaBlob names a blob of the same segment: its offset and catalog id.
type MetaBlob struct {
	Offset int64
	ID     int64
}

// MetaTx is a transaction. Its commit LSN and xid are written only when
// Explicit: otherwise they are those of the blobs' transaction markers,
// which the reader matches in commit LSN order (ResolveTxs).
type MetaTx struct {
	CommitLSN  uint64
	EndLSN     uint64
	Xid        uint32
	CommitTime time.Time
	Origin     string
	Explicit   bool // no blob of the commit holds a change of it (messages only)
	Purged     bool // in a rewrite: its catalog row was purged, nothing but the marker is known
}

// MetaMessage is a transactional logical message.
type MetaMessage struct {
	CommitLSN uint64
	Seq       int
	Prefix    string
	Content   []byte
}

const (
	txFlagExplicit = 1
	txFlagOrigin   = 2
	txFlagPurged   = 4
)

// AppendMetadata encodes m. Transactions are encoded by columns (flags,
// end-LSN deltas, commit-time deltas), which the blob's compression then
// squeezes: a run of similar transactions costs about two bytes each.
func AppendMetadata(dst []byte, m *Metadata) ([]byte, error) {
	if m.Rewrite {
		dst = append(dst, metaRewrite)
	}
	if a := m.Archive; a != nil {
		dst = append(dst, metaArchive)
		dst = appendString(dst, a.SystemID)
		dst = appendString(dst, a.Database)
		dst = appendString(dst, a.ServerVersion)
		dst = appendString(dst, a.CreatedAt)
	}
	if p := m.Position; p != nil {
		dst = append(dst, metaPosition)
		dst = binary.AppendUvarint(dst, uint64(p.Epoch))
		dst = binary.AppendUvarint(dst, p.EndLSN)
		dst = binary.AppendVarint(dst, Micros(p.At))
	}
	for _, e := range m.Epochs {
		dst = append(dst, metaEpoch)
		dst = binary.AppendUvarint(dst, uint64(e.ID))
		dst = binary.AppendUvarint(dst, e.StartLSN)
		dst = binary.AppendVarint(dst, Micros(e.StartedAt))
		dst = appendString(dst, e.Slot)
		dst = appendString(dst, e.Reason)
	}
	for _, s := range m.Schemas {
		shape, err := json.Marshal(s.Table)
		if err != nil {
			return dst, fmt.Errorf("encode schema version %d of %s: %w", s.Version, s.QualifiedName(), err)
		}
		dst = append(dst, metaSchema)
		dst = binary.AppendUvarint(dst, uint64(s.TableID))
		dst = binary.AppendUvarint(dst, uint64(s.OID))
		dst = binary.AppendUvarint(dst, s.RelFirstLSN)
		dst = binary.AppendUvarint(dst, uint64(s.Version))
		dst = binary.AppendUvarint(dst, s.FromLSN)
		dst = appendString(dst, string(shape))
	}
	if len(m.Blobs) > 0 {
		dst = append(dst, metaBlobs)
		dst = binary.AppendUvarint(dst, uint64(len(m.Blobs)))
		var off, id int64
		for _, b := range m.Blobs {
			dst = binary.AppendVarint(dst, b.Offset-off)
			dst = binary.AppendVarint(dst, b.ID-id)
			off, id = b.Offset, b.ID
		}
	}
	if len(m.Txs) > 0 {
		dst = append(dst, metaTxs)
		dst = binary.AppendUvarint(dst, uint64(len(m.Txs)))
		for _, t := range m.Txs {
			var f byte
			if t.Explicit {
				f |= txFlagExplicit
			}
			if t.Origin != "" {
				f |= txFlagOrigin
			}
			if t.Purged {
				f |= txFlagPurged
			}
			dst = append(dst, f)
		}
		var prev uint64
		for _, t := range m.Txs {
			if t.Explicit {
				dst = binary.AppendVarint(dst, int64(t.CommitLSN-prev))
				dst = binary.AppendUvarint(dst, uint64(t.Xid))
				prev = t.CommitLSN
			}
		}
		for _, t := range m.Txs {
			dst = binary.AppendVarint(dst, int64(t.EndLSN-t.CommitLSN))
		}
		var us int64
		for _, t := range m.Txs {
			u := Micros(t.CommitTime)
			dst = binary.AppendVarint(dst, u-us)
			us = u
		}
		for _, t := range m.Txs {
			if t.Origin != "" {
				dst = appendString(dst, t.Origin)
			}
		}
	}
	if len(m.Messages) > 0 {
		dst = append(dst, metaMessages)
		dst = binary.AppendUvarint(dst, uint64(len(m.Messages)))
		for _, msg := range m.Messages {
			dst = binary.AppendUvarint(dst, msg.CommitLSN)
			dst = binary.AppendUvarint(dst, uint64(msg.Seq))
			dst = appendString(dst, msg.Prefix)
			dst = appendString(dst, string(msg.Content))
		}
	}
	return appendTableRecords(dst, m), nil
}

// appendTableRecords encodes the rows of table_gap, table_storage,
// rel_life and partition_tree, one record each: they are few (a table's
// changes of shape, creation and drop, a tree's changes).
func appendTableRecords(dst []byte, m *Metadata) []byte {
	if m.Carries {
		dst = append(dst, metaCarries)
	}
	for _, g := range m.Gaps {
		dst = append(dst, metaGap)
		dst = binary.AppendUvarint(dst, uint64(g.ID))
		dst = binary.AppendUvarint(dst, uint64(g.TableID))
		dst = binary.AppendUvarint(dst, g.FromLSN)
		dst = binary.AppendVarint(dst, g.FromTime)
		dst = binary.AppendVarint(dst, int64(g.SeenLSN-g.FromLSN))
		dst = appendString(dst, g.Reason)
	}
	for _, s := range m.Storage {
		dst = append(dst, metaStorage)
		dst = binary.AppendUvarint(dst, uint64(s.TableID))
		dst = binary.AppendUvarint(dst, uint64(s.Relfilenode))
		dst = appendString(dst, s.Description)
	}
	for _, l := range m.Lives {
		var f byte
		if l.Created {
			f |= lifeCreated
		}
		if l.CreatedExact {
			f |= lifeCreatedExact
		}
		if l.Dropped {
			f |= lifeDropped
		}
		if l.DropExact {
			f |= lifeDropExact
		}
		dst = append(dst, metaLife)
		dst = binary.AppendUvarint(dst, uint64(l.TableID))
		dst = append(dst, f)
		if l.Created {
			dst = binary.AppendUvarint(dst, l.CreatedLSN)
			dst = binary.AppendVarint(dst, l.CreatedAt)
		}
		if l.Dropped {
			dst = binary.AppendUvarint(dst, l.DroppedLSN)
			dst = binary.AppendVarint(dst, l.DroppedAt)
			dst = binary.AppendVarint(dst, int64(l.DroppedLSN-l.AliveLSN))
			dst = binary.AppendVarint(dst, l.DroppedAt-l.AliveAt)
		}
	}
	for _, p := range m.Partitions {
		var f byte
		if p.ViaRoot {
			f = 1
		}
		dst = append(dst, metaPartition)
		dst = binary.AppendUvarint(dst, uint64(p.ID))
		dst = binary.AppendUvarint(dst, uint64(p.Root))
		dst = binary.AppendUvarint(dst, p.FromLSN)
		dst = binary.AppendVarint(dst, int64(p.ToLSN-p.FromLSN))
		dst = binary.AppendVarint(dst, p.FromTime)
		dst = binary.AppendVarint(dst, p.ToTime-p.FromTime)
		dst = append(dst, f)
		dst = appendString(dst, p.Nodes)
	}
	for _, e := range m.RunEnds {
		dst = append(dst, metaRunEnd)
		dst = binary.AppendUvarint(dst, uint64(e.ID))
		dst = binary.AppendUvarint(dst, e.ToLSN)
		dst = binary.AppendVarint(dst, e.ToTime)
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// metaReader decodes metadata records; the first error sticks.
type metaReader struct {
	buf []byte
	pos int
	err error
}

func (r *metaReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: metadata: %s at byte %d", ErrCorrupt, what, r.pos)
	}
}

func (r *metaReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.buf[r.pos:])
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	r.pos += n
	return v
}

func (r *metaReader) varint() int64 { return zigzag(r.uvarint()) }

func (r *metaReader) byte() byte {
	if r.err != nil {
		return 0
	}
	if r.pos >= len(r.buf) {
		r.fail("truncated record")
		return 0
	}
	b := r.buf[r.pos]
	r.pos++
	return b
}

func (r *metaReader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.buf)-r.pos) {
		r.fail("string past the end")
		return nil
	}
	b := r.buf[r.pos : r.pos+int(n)]
	r.pos += int(n)
	return b
}

// count reads a record count, each element taking at least min bytes.
func (r *metaReader) count(min int) int {
	n := r.uvarint()
	if r.err == nil && n > uint64((len(r.buf)-r.pos)/min) {
		r.fail("count past the end")
		return 0
	}
	return int(n)
}

// ParseMetadata decodes the records of a metadata blob. Transactions that
// are not Explicit come back without commit LSN, end LSN and xid: ResolveTxs
// fills them in.
func ParseMetadata(raw []byte) (Metadata, error) {
	var m Metadata
	r := &metaReader{buf: raw}
	for r.err == nil && r.pos < len(r.buf) {
		tag := r.byte()
		switch tag {
		case metaRewrite:
			m.Rewrite = true
		case metaArchive:
			m.Archive = &ArchiveRecord{SystemID: string(r.bytes()), Database: string(r.bytes()), ServerVersion: string(r.bytes()), CreatedAt: string(r.bytes())}
		case metaPosition:
			m.Position = &MetaPosition{Epoch: int64(r.uvarint()), EndLSN: r.uvarint(), At: FromMicros(r.varint())}
		case metaEpoch:
			var e EpochRecord
			e.ID = int64(r.uvarint())
			e.StartLSN = r.uvarint()
			e.StartedAt = FromMicros(r.varint())
			e.Slot = string(r.bytes())
			e.Reason = string(r.bytes())
			m.Epochs = append(m.Epochs, e)
		case metaSchema:
			var s MetaSchema
			s.TableID = int64(r.uvarint())
			oid := r.uvarint()
			s.OID = uint32(oid)
			s.RelFirstLSN = r.uvarint()
			s.Version = int(r.uvarint())
			s.FromLSN = r.uvarint()
			shape := r.bytes()
			if r.err == nil {
				if oid > 1<<32-1 || s.TableID <= 0 || s.Version <= 0 {
					r.fail("bad schema version")
				} else if err := json.Unmarshal(shape, &s.Table); err != nil {
					r.fail("schema version shape: " + err.Error())
				}
			}
			m.Schemas = append(m.Schemas, s)
		case metaBlobs:
			n := r.count(2)
			var off, id int64
			for i := 0; i < n && r.err == nil; i++ {
				off += r.varint()
				id += r.varint()
				m.Blobs = append(m.Blobs, MetaBlob{Offset: off, ID: id})
			}
		case metaTxs:
			r.readTxs(&m)
		case metaMessages:
			n := r.count(4)
			for i := 0; i < n && r.err == nil; i++ {
				var msg MetaMessage
				msg.CommitLSN = r.uvarint()
				msg.Seq = int(r.uvarint())
				msg.Prefix = string(r.bytes())
				msg.Content = append([]byte{}, r.bytes()...)
				m.Messages = append(m.Messages, msg)
			}
		case metaCarries:
			m.Carries = true
		case metaGap:
			var g MetaGap
			g.ID = int64(r.uvarint())
			g.TableID = int64(r.uvarint())
			g.FromLSN = r.uvarint()
			g.FromTime = r.varint()
			g.SeenLSN = g.FromLSN + uint64(r.varint())
			g.Reason = string(r.bytes())
			if r.err == nil && (g.ID <= 0 || g.TableID <= 0) {
				r.fail("bad inexact span")
			}
			m.Gaps = append(m.Gaps, g)
		case metaStorage:
			var s MetaStorage
			s.TableID = int64(r.uvarint())
			node := r.uvarint()
			s.Relfilenode = uint32(node)
			s.Description = string(r.bytes())
			if r.err == nil && (s.TableID <= 0 || node > 1<<32-1 || !json.Valid([]byte(s.Description))) {
				r.fail("bad table storage")
			}
			m.Storage = append(m.Storage, s)
		case metaLife:
			var l MetaLife
			l.TableID = int64(r.uvarint())
			f := r.byte()
			l.Created, l.CreatedExact = f&lifeCreated != 0, f&lifeCreatedExact != 0
			l.Dropped, l.DropExact = f&lifeDropped != 0, f&lifeDropExact != 0
			if l.Created {
				l.CreatedLSN = r.uvarint()
				l.CreatedAt = r.varint()
			}
			if l.Dropped {
				l.DroppedLSN = r.uvarint()
				l.DroppedAt = r.varint()
				l.AliveLSN = l.DroppedLSN - uint64(r.varint())
				l.AliveAt = l.DroppedAt - r.varint()
			}
			if r.err == nil && (l.TableID <= 0 || f&^(lifeCreated|lifeCreatedExact|lifeDropped|lifeDropExact) != 0) {
				r.fail("bad table life")
			}
			m.Lives = append(m.Lives, l)
		case metaPartition:
			var p MetaPartition
			p.ID = int64(r.uvarint())
			root := r.uvarint()
			p.Root = uint32(root)
			p.FromLSN = r.uvarint()
			p.ToLSN = p.FromLSN + uint64(r.varint())
			p.FromTime = r.varint()
			p.ToTime = p.FromTime + r.varint()
			f := r.byte()
			p.ViaRoot = f == 1
			p.Nodes = string(r.bytes())
			if r.err == nil && (p.ID <= 0 || root > 1<<32-1 || f > 1 || !json.Valid([]byte(p.Nodes))) {
				r.fail("bad partition tree")
			}
			m.Partitions = append(m.Partitions, p)
		case metaRunEnd:
			e := MetaRunEnd{ID: int64(r.uvarint()), ToLSN: r.uvarint(), ToTime: r.varint()}
			if r.err == nil && e.ID <= 0 {
				r.fail("bad partition run end")
			}
			m.RunEnds = append(m.RunEnds, e)
		default:
			r.pos--
			r.fail(fmt.Sprintf("unknown record tag 0x%02x", tag))
		}
	}
	return m, r.err
}

func (r *metaReader) readTxs(m *Metadata) {
	n := r.count(3)
	if r.err != nil {
		return
	}
	txs := make([]MetaTx, n)
	flags := make([]byte, n)
	for i := range txs {
		flags[i] = r.byte()
		if flags[i]&^(txFlagExplicit|txFlagOrigin|txFlagPurged) != 0 {
			r.fail("bad transaction flags")
		}
		txs[i].Explicit = flags[i]&txFlagExplicit != 0
		txs[i].Purged = flags[i]&txFlagPurged != 0
	}
	var prev uint64
	for i := range txs {
		if txs[i].Explicit {
			prev += uint64(r.varint())
			txs[i].CommitLSN = prev
			xid := r.uvarint()
			if xid > 1<<32-1 {
				r.fail("bad xid")
			}
			txs[i].Xid = uint32(xid)
		}
	}
	for i := range txs {
		// Kept as a delta until the commit LSN is known.
		txs[i].EndLSN = uint64(r.varint())
	}
	var us int64
	for i := range txs {
		us += r.varint()
		txs[i].CommitTime = FromMicros(us)
	}
	for i := range txs {
		if flags[i]&txFlagOrigin != 0 {
			txs[i].Origin = string(r.bytes())
		}
	}
	for i := range txs {
		if txs[i].Explicit {
			txs[i].EndLSN += txs[i].CommitLSN
		}
	}
	if r.err == nil {
		m.Txs = append(m.Txs, txs...)
	}
}

// TxMark is a transaction as the blobs' markers give it.
type TxMark struct {
	CommitLSN uint64
	Xid       uint32
}

// ResolveTxs gives the transactions that are not Explicit their commit LSN,
// xid and end LSN from marks, the distinct transaction markers of the blobs
// the metadata lists, in commit LSN order. Together with the explicit ones
// they must be exactly the metadata's transactions, in the same order.
func (m *Metadata) ResolveTxs(marks []TxMark) error {
	j := 0
	var last uint64
	for i := range m.Txs {
		t := &m.Txs[i]
		if !t.Explicit {
			if j >= len(marks) {
				return fmt.Errorf("%w: metadata lists %d transactions, its blobs hold fewer", ErrCorrupt, len(m.Txs))
			}
			t.CommitLSN, t.Xid = marks[j].CommitLSN, marks[j].Xid
			t.EndLSN += t.CommitLSN
			j++
		}
		if i > 0 && t.CommitLSN <= last {
			return fmt.Errorf("%w: metadata transactions out of commit order at %s", ErrCorrupt, FormatLSN(t.CommitLSN))
		}
		last = t.CommitLSN
	}
	if j != len(marks) {
		return fmt.Errorf("%w: the blobs hold %d transactions the metadata does not list", ErrCorrupt, len(marks)-j)
	}
	return nil
}
