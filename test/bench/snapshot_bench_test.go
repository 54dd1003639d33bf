package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pierrec/lz4/v4"

	"lbt/catalog"
	"lbt/catalog/catalogtest"
	"lbt/crypt"
	"lbt/storage"
)

// BenchmarkCatalogSnapshot prints what the catalog snapshot of one upload
// costs at a catalog of LBT_BENCH_SNAPSHOT_MB (default 256; the issue's
// realistic size is 1024) written by the catalog's own writer: commits of
// 1,000 transactions of an update and an insert, each with the updated
// row's key, and a blob per table per commit. Medians of
// LBT_BENCH_SNAPSHOT_RUNS (3) of: Pin, which the archiver runs at each seal
// while the stream waits, against the VACUUM INTO it ran there before; the
// copy (WriteTo), the retirement of the active segment, the age encryption
// of an encrypted archive and the PUT to versitygw, in the uploader; and
// the DataVersion look that lets an idle daemon skip an unchanged catalog.
// It also prints the snapshot's lz4-compressed size, to weigh compressing
// it.
func BenchmarkCatalogSnapshot(b *testing.B) {
	ctx := context.Background()
	target := int64(envInt("LBT_BENCH_SNAPSHOT_MB", 256)) << 20
	runs := envInt("LBT_BENCH_SNAPSHOT_RUNS", 3)
	dir := b.TempDir()
	// The catalog, a copy and the object: leave 8 GB free
	// for the rest of the machine.
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		b.Fatal(err)
	}
	if free := int64(fs.Bavail) * fs.Bsize; free < 3*target+8<<30 {
		b.Fatalf("%d MiB free in %s, want %d MiB for a %d MiB catalog: lower LBT_BENCH_SNAPSHOT_MB", free>>20, dir, (3*target+8<<30)>>20, target>>20)
	}
	cat := catalogtest.New(b, dir)
	changes, took := fillCatalog(b, ctx, cat, target)
	size := catalogBytes(b, cat)
	b.Logf("catalog of %d MiB, %d changes (%.1f B a change), written in %v", size>>20, changes, float64(size)/float64(changes), took.Round(time.Second))

	_, _, store := benchStore(b, "snapshot", "pg")
	_, recipient, err := crypt.Generate(false)
	if err != nil {
		b.Fatal(err)
	}
	keys, err := crypt.New([]string{recipient}, "")
	if err != nil {
		b.Fatal(err)
	}

	var vacuum, pin, backup, retire, encrypt, put, look []time.Duration
	var snapBytes, lz4Bytes int64
	b.ResetTimer()
	for i := 0; i < runs; i++ {
		// The reference: VACUUM INTO, which Snapshot used before.
		path := filepath.Join(b.TempDir(), "vacuum.db")
		t0 := time.Now()
		if _, err := cat.DB().ExecContext(ctx, `VACUUM INTO ?`, path); err != nil {
			b.Fatal(err)
		}
		vacuum = append(vacuum, time.Since(t0))
		os.Remove(path)
		path = filepath.Join(b.TempDir(), "snapshot.db")
		t0 = time.Now()
		pinned, err := cat.Pin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		pin = append(pin, time.Since(t0))
		t0 = time.Now()
		err = pinned.WriteTo(ctx, path)
		pinned.Close()
		if err != nil {
			b.Fatal(err)
		}
		backup = append(backup, time.Since(t0))
		t0 = time.Now()
		if err := catalog.RetireActiveSegment(ctx, path); err != nil {
			b.Fatal(err)
		}
		retire = append(retire, time.Since(t0))
		t0 = time.Now()
		if _, err := ageSize(keys, path); err != nil {
			b.Fatal(err)
		}
		encrypt = append(encrypt, time.Since(t0))
		name := fmt.Sprintf("catalog/%016X-%016X.db", i, i)
		t0 = time.Now()
		if err := storage.PutFile(ctx, store, name, path); err != nil {
			b.Fatal(err)
		}
		put = append(put, time.Since(t0))
		if err := store.Delete(ctx, name); err != nil {
			b.Fatal(err)
		}
		t0 = time.Now()
		if _, err := cat.DataVersion(ctx); err != nil {
			b.Fatal(err)
		}
		look = append(look, time.Since(t0))
		if i == 0 {
			st, _ := os.Stat(path)
			snapBytes = st.Size()
			if lz4Bytes, err = lz4Size(path); err != nil {
				b.Fatal(err)
			}
		}
		os.Remove(path)
	}
	b.StopTimer()
	mib := float64(snapBytes) / (1 << 20)
	b.Logf("snapshot of %.0f MiB (lz4: %.0f MiB, %.2fx), medians of %d: the archiver waits %v (Pin) where VACUUM INTO took %v (%.0f MiB/s); in the uploader: WriteTo (online backup) %v (%.0f MiB/s, %.2fx VACUUM INTO), retire the active segment %v, age %v, PUT %v (%.0f MiB/s); DataVersion %v",
		mib, float64(lz4Bytes)/(1<<20), float64(snapBytes)/float64(lz4Bytes), runs,
		median(pin), median(vacuum).Round(time.Millisecond), mib/median(vacuum).Seconds(),
		median(backup).Round(time.Millisecond), mib/median(backup).Seconds(), median(backup).Seconds()/median(vacuum).Seconds(), median(retire).Round(time.Millisecond),
		median(encrypt).Round(time.Millisecond), median(put).Round(time.Millisecond), mib/median(put).Seconds(), median(look))
	b.ReportMetric(median(pin).Seconds()*1e3, "pin-ms")
	b.ReportMetric(median(backup).Seconds(), "copy-s")
	b.ReportMetric(median(vacuum).Seconds(), "vacuum-into-s")
	b.ReportMetric(median(put).Seconds(), "put-s")
	b.ReportMetric(mib, "snapshot-MiB")
}

// fillCatalog commits transactions into cat until it holds target bytes.
func fillCatalog(b *testing.B, ctx context.Context, cat *catalog.Catalog, target int64) (changes int, took time.Duration) {
	b.Helper()
	start := time.Now()
	tables := []catalog.TxTable{{TableID: 1, Counts: catalog.Counts{Updates: 1}}, {TableID: 2, Counts: catalog.Counts{Inserts: 1}}}
	at := time.Date(2026, 11, 21, 14, 0, 0, 0, time.UTC)
	lsn := uint64(1 << 32)
	blobID := int64(0)
	rng := rand.New(rand.NewPCG(1, 2))
	const txs = 1000
	for commit := 0; ; commit++ {
		if commit%100 == 0 && catalogBytes(b, cat) >= target {
			return changes, time.Since(start)
		}
		w, err := cat.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		first := lsn + 200
		for i := 0; i < txs; i++ {
			lsn += 200
			w.AddTx(catalog.Tx{CommitLSN: lsn, EndLSN: lsn + 8, Xid: uint32(lsn), CommitTime: at.Add(time.Duration(lsn)), Tables: tables})
			w.AddRowKey(1, rng.Int64(), lsn)
		}
		for table := int64(1); table <= 2; table++ {
			blobID++
			w.AddBlob(catalog.Blob{ID: blobID, TableID: table, SegmentID: 1, Offset: blobID * 100, Length: 100, CRC: uint32(blobID),
				Schema: 1, FirstLSN: first, LastLSN: lsn, Changes: txs, RawLength: 30 * txs, Txs: txs, Counts: catalog.Counts{Inserts: txs}})
		}
		if err := w.Commit(); err != nil {
			b.Fatal(err)
		}
		changes += 2 * txs
	}
}

func catalogBytes(b *testing.B, cat *catalog.Catalog) int64 {
	b.Helper()
	var pages, pageSize int64
	if err := cat.DB().QueryRow(`PRAGMA page_count`).Scan(&pages); err != nil {
		b.Fatal(err)
	}
	if err := cat.DB().QueryRow(`PRAGMA page_size`).Scan(&pageSize); err != nil {
		b.Fatal(err)
	}
	return pages * pageSize
}

// ageSize is the size of path encrypted to keys, as the uploader
// encrypts an encrypted archive's snapshot.
func ageSize(keys *crypt.Keys, path string) (int64, error) {
	in, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	var n countWriter
	w, err := keys.Writer(&n)
	if err != nil {
		return 0, err
	}
	if _, err := io.Copy(w, in); err != nil {
		return 0, err
	}
	err = w.Close()
	return int64(n), err
}

// lz4Size is the size of path compressed as an lz4 frame.
func lz4Size(path string) (int64, error) {
	in, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	var n countWriter
	w := lz4.NewWriter(&n)
	if _, err := io.Copy(w, in); err != nil {
		return 0, err
	}
	err = w.Close()
	return int64(n), err
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }
