package restore

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/pierrec/lz4/v4"

	"lbt/catalog"
	"lbt/crypt"
	"lbt/storage"
)

// dataSource produces the restored rows as COPY text: the basebackup's rows
// that the deltas left alone, then the rows the deltas left behind.
type dataSource struct {
	cat  *catalog.Catalog
	pl   *plan
	red  *reducer
	td   *tableDef
	prog *progress
	// bases are the basebackup's files, opened with the plan, in the
	// order of its Files; none: opened here
	bases []io.ReadCloser
	// reused: the basebackup's files that no change touches, not written
	// (synthetic basebackups, format 5: rewrite).
	reused []catalog.Chunk

	missingFields [][]byte // see missing
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crcReader checksums what is read through it.
type crcReader struct {
	r   io.Reader
	sum uint32
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.sum = crc32.Update(c.sum, castagnoli, p[:n])
	return n, err
}

// write streams the rows to w and returns what they say about the columns.
func (d *dataSource) write(ctx context.Context, w io.Writer) (*dataStats, error) {
	rw := newRowWriter(w, d.td, d.prog)
	if !d.red.truncated {
		if err := d.writeBase(ctx, rw); err != nil {
			return nil, err
		}
	}
	if err := d.writeChanged(ctx, rw); err != nil {
		return nil, err
	}
	if err := rw.flush(); err != nil {
		return nil, err
	}
	return rw.st, nil
}

// writeChanged writes the rows the deltas left behind, once the
// basebackup was read.
func (d *dataSource) writeChanged(ctx context.Context, rw *rowWriter) error {
	n := 0
	return d.red.each(func(row []value) error {
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		return rw.writeValues(row)
	})
}

// writeBase streams the basebackup's files through the merger, checking
// each file's checksum and row count as it goes.
func (d *dataSource) writeBase(ctx context.Context, rw *rowWriter) error {
	bb := d.pl.bb
	if bb.Path == "" {
		return nil // the empty start of a table created inside the history (emptyStart)
	}
	merge, err := d.red.merger(d.pl.shapes.def)
	if err != nil {
		return fmt.Errorf("%s: %w", d.pl.source.QualifiedName(), err)
	}
	for k, c := range bb.Files() {
		var f io.ReadCloser
		if k < len(d.bases) {
			f = d.bases[k]
		}
		if err := d.copyFile(ctx, merge, rw, c, f); err != nil {
			return err
		}
	}
	if err := merge.finish(); err != nil {
		return fmt.Errorf("%s: %w", d.pl.source.QualifiedName(), err)
	}
	return nil
}

// identity reports whether the basebackup's fields are the restored
// columns in order.
func (d *dataSource) identity() bool {
	if len(d.pl.shapes.def) != len(d.pl.bb.Definition.Table.Columns) {
		return false
	}
	for j, i := range d.pl.shapes.def {
		if i != j {
			return false
		}
	}
	return true
}

// copyFile writes to rw the rows of file c of the basebackup (read from f
// when it is open already) that the merger keeps.
func (d *dataSource) copyFile(ctx context.Context, merge *baseMerger, rw *rowWriter, c catalog.Chunk, f io.ReadCloser) error {
	pass, identity := merge.passAll(), d.identity()
	var rows int64
	return readBaseFile(ctx, d.cat.Store(), d.cat.Keys(), d.pl.bb, c, f, d.prog, func(line []byte, fields [][]byte) error {
		rows++
		if !pass {
			keep, err := merge.keep(fields)
			if err != nil {
				return fmt.Errorf("%s: basebackup file %s, row %d: %w", d.pl.source.QualifiedName(), c.Path, rows, err)
			}
			if !keep {
				return nil
			}
		}
		if identity {
			return rw.writeLine(line, fields)
		}
		return rw.writeMapped(fields, d.pl.shapes.def, d.missing())
	})
}

// readBaseFile reads one file of basebackup bb (from f when it is open
// already) and calls row with each row's line (without its newline) and
// fields, then checks the file's checksum and row count against the
// catalog's. keys decrypt it in an encrypted archive (nil: plaintext).
func readBaseFile(ctx context.Context, store storage.Store, keys *crypt.Keys, bb catalog.Basebackup, c catalog.Chunk, f io.ReadCloser, prog *progress, row func(line []byte, fields [][]byte) error) error {
	if f == nil {
		var err error
		if f, err = store.ReadRange(ctx, c.Path, 0, -1); err != nil {
			return fmt.Errorf("basebackup %d: %w", bb.ID, err)
		}
		defer f.Close()
	}
	crc := &crcReader{r: f} // of the file as stored, encrypted or not
	plain, err := keys.Reader(crc)
	if err != nil {
		return fmt.Errorf("basebackup %d (%s): %w", bb.ID, c.Path, err)
	}
	br := bufio.NewReaderSize(lz4.NewReader(plain), 1<<20)
	width := len(bb.Definition.Table.Columns)
	var rows int64
	var fields [][]byte
	var long []byte
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err == io.EOF && len(line) == 0 {
			break
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("basebackup %d (%s): %w", bb.ID, c.Path, err)
		}
		if len(line) == 0 || line[len(line)-1] != '\n' {
			return fmt.Errorf("basebackup %d (%s): %w: last row has no end", bb.ID, c.Path, catalog.ErrCorrupt)
		}
		rows++
		prog.add(int64(len(line)), 0)
		if rows%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		line = line[:len(line)-1]
		fields = splitFields(fields, line)
		if width == 0 && len(line) == 0 {
			fields = fields[:0] // a row of a table without columns
		}
		if len(fields) != width {
			return fmt.Errorf("basebackup %d (%s): %w: row %d has %d columns, the definition %d", bb.ID, c.Path, catalog.ErrCorrupt, rows, len(fields), width)
		}
		if err := row(line, fields); err != nil {
			return err
		}
	}
	// Checksum the whole file, including what follows the lz4 frame; an
	// encrypted one is read to its end first, which authenticates its last
	// chunk.
	if _, err := io.Copy(io.Discard, plain); err != nil {
		return fmt.Errorf("basebackup %d (%s): %w", bb.ID, c.Path, err)
	}
	if _, err := io.Copy(io.Discard, crc); err != nil {
		return fmt.Errorf("basebackup %d (%s): %w", bb.ID, c.Path, err)
	}
	if crc.sum != c.CRC {
		return fmt.Errorf("basebackup %d (%s): %w: checksum %08x, the catalog says %08x", bb.ID, c.Path, catalog.ErrCorrupt, crc.sum, c.CRC)
	}
	if rows != c.Rows {
		return fmt.Errorf("basebackup %d (%s): %w: %d rows, the catalog says %d", bb.ID, c.Path, catalog.ErrCorrupt, rows, c.Rows)
	}
	return nil
}

// rowWriter writes COPY text lines and notes what the NOT NULL and sequence
// handling needs to know.
type rowWriter struct {
	w       *bufio.Writer
	st      *dataStats
	seqIdx  []int // restored value index of each sequence's column
	seqDesc []bool
	noting  bool // seqIdx is not empty
	line    []byte
	mapped  [][]byte
	prog    *progress
	sum     rowSum
	// noSum: the rows are not hashed here and st.sum stays 0, because
	// the checksum is not wanted (a synthetic basebackup's files are
	// checked by their CRCs and row counts; it is most of the CPU a row
	// costs) or because the writer's consumers compute it (a parallel
	// restore's jobs, each on its own core: rowsHashedLater).
	noSum bool
}

// rowsHashedLater is implemented by a writer of COPY text whose
// consumers compute the rows' checksum themselves.
type rowsHashedLater interface {
	hashesRows()
}

// counted counts a row written.
func (rw *rowWriter) counted() {
	rw.st.rows++
	if rw.st.rows%1024 == 0 {
		rw.prog.add(0, 1024)
	}
}

func newRowWriter(w io.Writer, td *tableDef, prog *progress) *rowWriter {
	rw := &rowWriter{w: bufio.NewWriterSize(w, 256<<10), st: &dataStats{}, prog: prog}
	_, rw.noSum = w.(rowsHashedLater)
	for _, s := range td.sequences {
		rw.seqIdx = append(rw.seqIdx, td.columns[s.col].copyIdx)
		rw.seqDesc = append(rw.seqDesc, s.Increment < 0)
	}
	rw.noting = len(rw.seqIdx) > 0
	rw.st.seqMax = make([]int64, len(td.sequences))
	rw.st.seqFound = make([]bool, len(td.sequences))
	return rw
}

// noteFields notes the sequence columns' values of a row given by its
// escaped fields.
func (rw *rowWriter) noteFields(field func(j int) []byte) {
	for i, j := range rw.seqIdx {
		if f := field(j); f != nil && !isNullField(f) {
			rw.noteSeq(i, f)
		}
	}
}

func (rw *rowWriter) noteSeq(i int, text []byte) {
	v, ok := parseInt(text)
	if !ok {
		return
	}
	if !rw.st.seqFound[i] || (!rw.seqDesc[i] && v > rw.st.seqMax[i]) || (rw.seqDesc[i] && v < rw.st.seqMax[i]) {
		rw.st.seqMax[i], rw.st.seqFound[i] = v, true
	}
}

// writeLine writes a basebackup line whose fields are the restored columns
// in order.
func (rw *rowWriter) writeLine(line []byte, fields [][]byte) error {
	if rw.noting {
		rw.noteFields(func(j int) []byte { return fields[j] })
	}
	if !rw.noSum {
		if err := rw.sum.addFields(fields); err != nil {
			return err
		}
	}
	rw.counted()
	rw.w.Write(line)
	return rw.w.WriteByte('\n')
}

// missing gives, escaped for COPY, what basebackup rows read in the
// restored columns added since the basebackup: NULL or a fast default.
func (d *dataSource) missing() [][]byte {
	if d.missingFields == nil {
		d.missingFields = make([][]byte, len(d.pl.shapes.missing))
		for j, v := range d.pl.shapes.missing {
			d.missingFields[j] = nullField
			if v.kind == catalog.ValueText {
				d.missingFields[j] = appendEscaped(nil, v.data)
			}
		}
	}
	return d.missingFields
}

// writeMapped writes a basebackup row whose fields are placed by def;
// missing holds the fields of the columns the basebackup lacks.
func (rw *rowWriter) writeMapped(fields [][]byte, def []int, missing [][]byte) error {
	field := func(j int) []byte {
		if def[j] < 0 {
			return missing[j]
		}
		return fields[def[j]]
	}
	if rw.noting {
		rw.noteFields(field)
	}
	mapped := rw.mapped[:0]
	line := rw.line[:0]
	for j := range def {
		if j > 0 {
			line = append(line, '\t')
		}
		f := field(j)
		mapped = append(mapped, f)
		line = append(line, f...)
	}
	rw.mapped = mapped
	if !rw.noSum {
		if err := rw.sum.addFields(mapped); err != nil {
			return err
		}
	}
	line = append(line, '\n')
	rw.line = line
	rw.counted()
	_, err := rw.w.Write(line)
	return err
}

// writeValues writes a row the deltas produced.
func (rw *rowWriter) writeValues(row []value) error {
	if rw.noting {
		for i, j := range rw.seqIdx {
			if row[j].kind == catalog.ValueText {
				rw.noteSeq(i, row[j].data)
			}
		}
	}
	line := rw.line[:0]
	for j, v := range row {
		if j > 0 {
			line = append(line, '\t')
		}
		switch v.kind {
		case catalog.ValueNull:
			line = append(line, nullField...)
		case catalog.ValueText:
			line = appendEscaped(line, v.data)
		default:
			return fmt.Errorf("restore: row with an unresolved unchanged TOAST value in column %d", j+1)
		}
	}
	line = append(line, '\n')
	rw.line = line
	if !rw.noSum {
		rw.sum.addValues(row)
	}
	rw.counted()
	_, err := rw.w.Write(line)
	return err
}

// flush writes what is buffered and records the checksum of the rows so far.
func (rw *rowWriter) flush() error {
	rw.st.sum = rw.sum.sum
	return rw.w.Flush()
}

// parseInt reads a decimal integer without allocating.
func parseInt(b []byte) (int64, bool) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	neg := false
	if b[0] == '-' || b[0] == '+' {
		neg = b[0] == '-'
		b = b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	if neg {
		v = -v
	}
	return v, true
}
