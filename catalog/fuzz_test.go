package catalog_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"reflect"
	"testing"

	"lbt/catalog"
)

// The decoders of the archive's bytes never panic, whatever they are given,
// and fail only with ErrCorrupt. The seeds run in `go test`; look for more
// with `go test ./catalog -run '^$' -fuzz FuzzDecodeBlob -fuzztime 3m` (one
// target at a time).

// FuzzDecodeBlob decodes arbitrary frames. The fuzzer would hardly ever
// guess a CRC-32C, so the checksum is put right first: that way the
// header checks and the LZ4 decompression behind it are reached.
func FuzzDecodeBlob(f *testing.F) {
	var enc catalog.BlobEncoder
	for _, raw := range [][]byte{
		nil,
		[]byte("short"),
		bytes.Repeat([]byte("compressible "), 50),
	} {
		frame, _, err := enc.Encode(3, 1, 100, raw)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(bytes.Clone(frame))
	}
	f.Add([]byte("LBTB"))
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) >= catalog.BlobHeaderSize {
			crc := crc32.Update(0, crc32.MakeTable(crc32.Castagnoli), frame[:32])
			crc = crc32.Update(crc, crc32.MakeTable(crc32.Castagnoli), frame[catalog.BlobHeaderSize:])
			binary.LittleEndian.PutUint32(frame[32:36], crc)
		}
		h, raw, err := catalog.DecodeBlob(frame, nil)
		if err != nil {
			if !errors.Is(err, catalog.ErrCorrupt) {
				t.Fatalf("error not wrapping ErrCorrupt: %v", err)
			}
			return
		}
		if len(raw) != h.RawLen {
			t.Fatalf("decoded %d bytes, header says %d", len(raw), h.RawLen)
		}
	})
}

// FuzzBlob_RoundTrip: whatever records are framed, compressed or not, they
// decode to the same bytes, and the header keeps what was given.
func FuzzBlob_RoundTrip(f *testing.F) {
	f.Add([]byte(nil), int64(1), 1, uint64(1))
	f.Add([]byte("abc"), int64(1<<31), 7, uint64(1<<40))
	f.Add(bytes.Repeat([]byte{0}, 5000), int64(9), 0, uint64(0))
	f.Fuzz(func(t *testing.T, raw []byte, tableID int64, schema int, lsn uint64) {
		tableID, schema = int64(uint32(tableID)), int(uint32(schema)) // the header's fields are 32 bits
		var enc catalog.BlobEncoder
		frame, h, err := enc.Encode(tableID, schema, lsn, raw)
		if err != nil {
			t.Fatal(err)
		}
		got, records, err := catalog.DecodeBlob(frame, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got != h || got.TableID != tableID || got.Schema != schema || got.FirstLSN != lsn || !bytes.Equal(records, raw) {
			t.Fatalf("blob did not round-trip: %+v, want %+v", got, h)
		}
	})
}

// FuzzRecord_RoundTrip builds a blob's records from the fuzzer's bytes
// (transaction markers, schema switches and changes of every kind) with
// the encoders, and reads them back with RecordReader: every change comes
// back with its transaction and schema version.
func FuzzRecord_RoundTrip(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte("\x00\xff\xff\xff\xff\x02\x10\x03abc\x01\x05\x02\x21\x02\x02\x00\x13"))
	f.Fuzz(func(t *testing.T, program []byte) {
		in := fuzzInput{b: program}
		var raw []byte
		var want []catalog.Change
		var lsn, prevLSN uint64
		var xid, prevXid uint32
		schema := 1
		for len(in.b) > 0 {
			switch op := in.byte() % 3; {
			case op == 0 || lsn == 0:
				lsn += 1 + uint64(in.uint32())
				xid += in.uint32()
				raw = catalog.AppendTx(raw, lsn, prevLSN, xid, prevXid)
				prevLSN, prevXid = lsn, xid
			case op == 1:
				schema = int(in.byte())
				raw = catalog.AppendSchema(raw, schema)
			default:
				c := in.change()
				raw = catalog.AppendChange(raw, c)
				c.CommitLSN, c.Xid, c.Schema = lsn, xid, schema
				want = append(want, c)
			}
		}
		r := catalog.NewRecordReader(raw, 1)
		for i, w := range want {
			c, ok, err := r.Next()
			if err != nil || !ok {
				t.Fatalf("change %d: ok=%v err=%v", i, ok, err)
			}
			if c.Tag != w.Tag || c.CommitLSN != w.CommitLSN || c.Xid != w.Xid || c.Schema != w.Schema ||
				c.OldKind != w.OldKind || c.Truncate != w.Truncate || !tupleEqual(c.Old, w.Old) || !tupleEqual(c.New, w.New) {
				t.Fatalf("change %d: got %+v, want %+v", i, c, w)
			}
		}
		if _, ok, err := r.Next(); ok || err != nil {
			t.Fatalf("after the last change: ok=%v err=%v", ok, err)
		}
	})
}

// fuzzInput hands out the fuzzer's bytes as the parts of changes; past the
// end it gives zeros.
type fuzzInput struct{ b []byte }

func (in *fuzzInput) byte() byte {
	if len(in.b) == 0 {
		return 0
	}
	c := in.b[0]
	in.b = in.b[1:]
	return c
}

func (in *fuzzInput) uint32() uint32 {
	var v uint32
	for i := 0; i < 4; i++ {
		v |= uint32(in.byte()) << (8 * i)
	}
	return v
}

func (in *fuzzInput) tuple() catalog.Tuple {
	t := catalog.Tuple{}
	for n := in.byte() % 5; n > 0; n-- {
		switch k := in.byte(); k % 3 {
		case 0:
			t = append(t, catalog.Value{Kind: catalog.ValueNull})
		case 1:
			t = append(t, catalog.Value{Kind: catalog.ValueUnchanged})
		default:
			l := int(k>>2) % 40
			data := make([]byte, 0, l)
			for i := 0; i < l; i++ {
				data = append(data, in.byte())
			}
			t = append(t, catalog.Value{Kind: catalog.ValueText, Data: data})
		}
	}
	return t
}

func (in *fuzzInput) change() catalog.Change {
	olds := []byte{catalog.OldNone, catalog.OldKey, catalog.OldFull}
	switch op := in.byte(); op % 4 {
	case 0:
		return catalog.Change{Tag: catalog.TagInsert, New: in.tuple()}
	case 1:
		c := catalog.Change{Tag: catalog.TagUpdate, OldKind: olds[int(op>>2)%3]}
		if c.OldKind != catalog.OldNone {
			c.Old = in.tuple()
		}
		c.New = in.tuple()
		return c
	case 2:
		return catalog.Change{Tag: catalog.TagDelete, OldKind: olds[1+int(op>>2)%2], Old: in.tuple()}
	default:
		return catalog.Change{Tag: catalog.TagTruncate, Truncate: op >> 2 & 3}
	}
}

// FuzzParseTxTables: tx.tables never panics the parser, and what it
// accepts encodes to a value that parses the same.
func FuzzParseTxTables(f *testing.F) {
	f.Add([]byte{})
	f.Add(catalog.AppendTxTables(nil, []catalog.TxTable{{TableID: 3, Counts: catalog.Counts{Inserts: 1, Deletes: 1 << 40}}}))
	f.Add([]byte{1, 2, 0x80})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		tables, err := catalog.ParseTxTables(b)
		if err != nil {
			if !errors.Is(err, catalog.ErrCorrupt) {
				t.Fatalf("error not wrapping ErrCorrupt: %v", err)
			}
			return
		}
		again, err := catalog.ParseTxTables(catalog.AppendTxTables(nil, tables))
		if err != nil || !reflect.DeepEqual(again, tables) {
			t.Fatalf("ParseTxTables(%x) = %v; encoded again it reads %v, %v", b, tables, again, err)
		}
	})
}
