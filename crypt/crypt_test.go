package crypt

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testKeys writes a fresh identity file and returns keys that write to and
// read with it.
func testKeys(t testing.TB) (*Keys, string) {
	t.Helper()
	id, rcpt, err := Generate(false)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "key.txt")
	if err := os.WriteFile(path, []byte("# test\n"+id+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := New([]string{rcpt}, path)
	if err != nil {
		t.Fatal(err)
	}
	return k, rcpt
}

func TestWholeFileRoundTrip(t *testing.T) {
	k, _ := testKeys(t)
	for _, n := range []int{0, 1, 64 << 10, 64<<10 + 1, 300 << 10} {
		data := bytes.Repeat([]byte("marker-0123456789abcdef "), n/24+1)[:n]
		enc, err := k.Seal(data)
		if err != nil {
			t.Fatal(err)
		}
		if n > 24 && bytes.Contains(enc, data[:24]) {
			t.Fatalf("%d bytes: plaintext in ciphertext", n)
		}
		got, err := k.Open(enc)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%d bytes: round trip: %v", n, err)
		}
		// Random access: one chunk near the end, read alone.
		ra, size, err := k.ReaderAt(bytes.NewReader(enc), int64(len(enc)))
		if err != nil || size != int64(n) {
			t.Fatalf("%d bytes: ReaderAt: %d, %v", n, size, err)
		}
		if n > 10 {
			part := make([]byte, 10)
			if _, err := ra.ReadAt(part, int64(n-10)); err != nil && err != io.EOF {
				t.Fatal(err)
			}
			if !bytes.Equal(part, data[n-10:]) {
				t.Fatalf("%d bytes: range read differs", n)
			}
		}
	}
}

func TestWholeFileDamage(t *testing.T) {
	k, _ := testKeys(t)
	data := bytes.Repeat([]byte{7}, 200<<10) // four chunks
	enc, err := k.Seal(data)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := testKeys(t)
	hdr := len(enc) - (16 + 4*16 + len(data)) // age header; then nonce, chunks
	chunk := 64<<10 + 16
	swapped := bytes.Clone(enc)
	a, b := hdr+16, hdr+16+chunk
	copy(swapped[a:], enc[b:b+chunk])
	copy(swapped[b:], enc[a:a+chunk])
	flipped := bytes.Clone(enc)
	flipped[len(flipped)/2] ^= 1
	cases := []struct {
		name string
		keys *Keys
		file []byte
		want error
	}{
		{"wrong key", other, enc, ErrNoKey},
		{"no identity", &Keys{recipients: k.recipients}, enc, ErrNoKey},
		{"truncated at a chunk boundary", k, enc[:hdr+16+chunk], ErrCorrupt},
		{"truncated inside a chunk", k, enc[:len(enc)-5], ErrCorrupt},
		{"flipped byte", k, flipped, ErrCorrupt},
		{"reordered chunks", k, swapped, ErrCorrupt},
		{"plaintext in an encrypted archive", k, data, ErrCorrupt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.keys.Open(c.file)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
	if _, err := (*Keys)(nil).Open(enc); err == nil {
		t.Fatal("a plaintext archive read an encrypted file")
	}
}

func TestNoKeyMessage(t *testing.T) {
	k, _ := testKeys(t)
	other, _ := testKeys(t)
	enc, _ := k.Seal([]byte("x"))
	_, err := other.Open(enc)
	if err == nil || !strings.HasPrefix(err.Error(), "archive is encrypted: decryptIdentityFile ") ||
		!strings.HasSuffix(err.Error(), " does not hold a key for it") {
		t.Fatalf("got %q", err)
	}
}

func TestBlobRoundTripAndRangeRead(t *testing.T) {
	k, _ := testKeys(t)
	block, bk, err := k.NewBlobKey(7)
	if err != nil {
		t.Fatal(err)
	}
	// A segment: key block, then records; each record is opened alone.
	file := append([]byte(nil), block...)
	var offs []int64
	var frames [][]byte
	for i := range 5 {
		frame := bytes.Repeat([]byte{byte('a' + i)}, 100*(i+1))
		off := int64(len(file))
		file, err = bk.Seal(file, frame, off)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(file))-off != int64(len(frame)+RecordOverhead) {
			t.Fatalf("record of %d bytes is %d", len(frame), int64(len(file))-off)
		}
		offs, frames = append(offs, off), append(frames, frame)
	}
	rk, err := k.OpenBlobKey(7, block)
	if err != nil {
		t.Fatal(err)
	}
	i := 3
	n, err := RecordLen(file[offs[i]:])
	if err != nil {
		t.Fatal(err)
	}
	got, err := rk.Open(nil, file[offs[i]:offs[i]+n], offs[i])
	if err != nil || !bytes.Equal(got, frames[i]) {
		t.Fatalf("blob %d: %v", i, err)
	}
}

func TestBlobDamage(t *testing.T) {
	k, _ := testKeys(t)
	block, bk, _ := k.NewBlobKey(7)
	frame := []byte("LBTB some blob frame with a marker 5f2c")
	rec, _ := bk.Seal(nil, frame, 100)
	rec2, _ := bk.Seal(nil, frame, 200)
	other, _ := testKeys(t)
	if _, err := other.OpenBlobKey(7, block); !errors.Is(err, ErrNoKey) {
		t.Fatalf("wrong key: %v", err)
	}
	if _, err := k.OpenBlobKey(7, block[:len(block)-1]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated key block: %v", err)
	}
	flipped := bytes.Clone(rec)
	flipped[40] ^= 0x80
	otherSeg, _ := k.OpenBlobKey(8, block)
	cases := []struct {
		name string
		key  *BlobKey
		rec  []byte
		off  int64
	}{
		{"flipped byte", bk, flipped, 100},
		{"truncated", bk, rec[:len(rec)-1], 100},
		{"moved to another offset", bk, rec, 200},
		{"swapped with the next", bk, rec2, 100},
		{"other segment's id", otherSeg, rec, 100},
		{"too short", bk, rec[:3], 100},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := c.key.Open(nil, c.rec, c.off); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v", err)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	oldID, oldR, _ := Generate(false)
	newID, newR, _ := Generate(false)
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	old, err := New([]string{oldR}, write("old.txt", oldID+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	encOld, _ := old.Seal([]byte("before"))
	// After the rotation new files go to the new recipient only; the
	// identity file holds both keys.
	k, err := New([]string{newR}, write("both.txt", oldID+"\n"+newID+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	encNew, _ := k.Seal([]byte("after"))
	if _, err := old.Open(encNew); !errors.Is(err, ErrNoKey) {
		t.Fatalf("old key opens a file written after rotation: %v", err)
	}
	for _, enc := range [][]byte{encOld, encNew} {
		if _, err := k.Open(enc); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBadConfig(t *testing.T) {
	if _, err := New([]string{"age1notakey"}, ""); err == nil || !strings.Contains(err.Error(), "encryptRecipients[0]") {
		t.Fatalf("bad recipient: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.txt")
	os.WriteFile(bad, []byte("AGE-SECRET-KEY-1NOPE\n"), 0o600)
	if _, err := New(nil, bad); err == nil || strings.Contains(err.Error(), "NOPE") {
		t.Fatalf("bad identity (must not be quoted): %v", err)
	}
	if _, err := New(nil, filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("missing identity file accepted")
	}
	_, pq, _ := Generate(true)
	_, x, _ := Generate(false)
	k, err := New([]string{pq, x}, "")
	if err == nil {
		_, err = k.Seal([]byte("x"))
	}
	if err == nil {
		t.Fatal("mixed post-quantum and classic recipients accepted")
	}
}

// FuzzBlobOpen feeds the record decoder arbitrary records and offsets: it
// must fail cleanly, and open only what was sealed there.
func FuzzBlobOpen(f *testing.F) {
	k, _ := testKeys(f)
	block, bk, _ := k.NewBlobKey(1)
	rec, _ := bk.Seal(nil, []byte("frame"), 16)
	f.Add(rec, int64(16))
	f.Add(rec[:10], int64(16))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, int64(0))
	f.Fuzz(func(t *testing.T, rec []byte, off int64) {
		if n, err := RecordLen(rec); err == nil && n < RecordOverhead {
			t.Fatalf("record length %d below the overhead", n)
		}
		out, err := bk.Open(nil, rec, off)
		if err == nil && (off != 16 || string(out) != "frame") {
			t.Fatalf("opened a record that was not sealed: %q at %d", out, off)
		}
	})
	_ = block
}

// FuzzHeader feeds the whole-file and key-block decoders arbitrary bytes.
func FuzzHeader(f *testing.F) {
	k, _ := testKeys(f)
	block, _, _ := k.NewBlobKey(1)
	f.Add(block)
	f.Add([]byte(ageMagic))
	f.Add([]byte(ageMagic + "-> X25519 abc\n--- def\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k.Open(data)
		k.OpenBlobKey(1, data)
		if ra, _, err := k.ReaderAt(bytes.NewReader(data), int64(len(data))); err == nil {
			ra.ReadAt(make([]byte, 16), 0)
		}
	})
}

// BenchmarkBlob seals and opens 64 KiB blobs: the cost encryption adds to
// each blob written and read.
func BenchmarkBlob(b *testing.B) {
	k, _ := testKeys(b)
	_, bk, _ := k.NewBlobKey(1)
	frame := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	rec, _ := bk.Seal(nil, frame, 16)
	b.Run("seal", func(b *testing.B) {
		b.SetBytes(int64(len(frame)))
		var dst []byte
		for b.Loop() {
			dst, _ = bk.Seal(dst[:0], frame, 16)
		}
	})
	b.Run("open", func(b *testing.B) {
		b.SetBytes(int64(len(frame)))
		var dst []byte
		for b.Loop() {
			dst, _ = bk.Open(dst[:0], rec, 16)
		}
	})
}

// BenchmarkWholeFile encrypts and decrypts a basebackup-like stream.
func BenchmarkWholeFile(b *testing.B) {
	k, _ := testKeys(b)
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	enc, _ := k.Seal(data)
	b.Run("encrypt", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			w, _ := k.Writer(io.Discard)
			w.Write(data)
			w.Close()
		}
	})
	b.Run("decrypt", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			r, _ := k.Reader(bytes.NewReader(enc))
			io.Copy(io.Discard, r)
		}
	})
}

func TestKeyBlockSize(t *testing.T) {
	for _, pq := range []bool{false, true} {
		_, rcpt, _ := Generate(pq)
		k, _ := New([]string{rcpt}, "")
		block, _, err := k.NewBlobKey(1)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("post-quantum %v: key block %d bytes, recipient %d characters", pq, len(block), len(rcpt))
	}
}
