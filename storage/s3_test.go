package storage_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lbt/storage"
	"lbt/test/s3test"
)

func TestMain(m *testing.M) { os.Exit(s3test.Main(m)) }

// newS3 returns a store on a new bucket of the shared versitygw, with the
// server's credentials in the environment as an operator would set them.
func newS3(t *testing.T, prefix string) (*storage.S3, *s3test.Server, string) {
	t.Helper()
	srv, bucket := s3test.Bucket(t)
	setCredentials(t, srv.AccessKey, srv.SecretKey)
	s, err := storage.NewS3(storage.S3Config{Bucket: bucket, Prefix: prefix, Endpoint: srv.Endpoint(), Region: s3test.Region, ForcePathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	return s, srv, bucket
}

func setCredentials(t *testing.T, access, secret string) {
	t.Setenv("AWS_ACCESS_KEY_ID", access)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func readAll(t *testing.T, s storage.Store, name string, off, length int64) []byte {
	t.Helper()
	rc, err := s.ReadRange(testContext(t), name, off, length)
	if err != nil {
		t.Fatalf("ReadRange(%s, %d, %d): %v", name, off, length, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("ReadRange(%s, %d, %d): %v", name, off, length, err)
	}
	return b
}

func TestS3_PutReadStatListDelete(t *testing.T) {
	ctx := testContext(t)
	s, srv, bucket := newS3(t, "arch/one")
	data := []byte("0123456789abcdefghij")
	names := []string{"segments/00000002.lbs", "base/16384/0000000001000000.copy.lz4", "segments/00000001.lbs"}
	for _, name := range names {
		if err := s.Put(ctx, name, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
	// An unknown size goes through the streaming path.
	if err := s.Put(ctx, "catalog/00000001.db", bytes.NewReader(data), -1); err != nil {
		t.Fatal(err)
	}

	ranges := []struct {
		off, length int64
		want        string
	}{
		{0, -1, string(data)},
		{0, 5, "01234"},
		{10, 5, "abcde"},
		{15, -1, "fghij"},
		{15, 100, "fghij"},
		{19, 1, "j"},
		{3, 0, ""},
		{20, -1, ""},
		{25, 4, ""},
	}
	for _, r := range ranges {
		if got := string(readAll(t, s, "segments/00000001.lbs", r.off, r.length)); got != r.want {
			t.Errorf("ReadRange(%d, %d) = %q, want %q", r.off, r.length, got, r.want)
		}
	}
	if got := string(readAll(t, s, "catalog/00000001.db", 0, -1)); got != string(data) {
		t.Errorf("streamed put read back %q", got)
	}

	info, err := s.Stat(ctx, "segments/00000002.lbs")
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "segments/00000002.lbs" || info.Size != int64(len(data)) || info.ModTime.IsZero() {
		t.Errorf("Stat = %+v", info)
	}

	list, err := s.List(ctx, "segments/")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, i := range list {
		got = append(got, i.Name)
		if i.Size != int64(len(data)) {
			t.Errorf("List: %s has size %d", i.Name, i.Size)
		}
	}
	if strings.Join(got, " ") != "segments/00000001.lbs segments/00000002.lbs" {
		t.Errorf("List(segments/) = %v", got)
	}
	all, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 4 || all[0].Name != "base/16384/0000000001000000.copy.lz4" {
		t.Errorf("List() = %+v", all)
	}

	// A store on another prefix of the same bucket sees none of it.
	other, err := storage.NewS3(storage.S3Config{Bucket: bucket, Prefix: "arch/two", Endpoint: srv.Endpoint(), Region: s3test.Region, ForcePathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	if l, err := other.List(ctx, ""); err != nil || len(l) != 0 {
		t.Errorf("other prefix lists %v, %v", l, err)
	}

	if err := s.Delete(ctx, "segments/00000001.lbs"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "segments/00000001.lbs"); err != nil {
		t.Errorf("second delete: %v", err)
	}
	if _, err := s.Stat(ctx, "segments/00000001.lbs"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat of a deleted object: %v, want fs.ErrNotExist", err)
	}
	if _, err := s.ReadRange(ctx, "segments/00000001.lbs", 0, -1); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadRange of a deleted object: %v, want fs.ErrNotExist", err)
	}
	if _, err := s.ReadRange(ctx, "segments/00000001.lbs", 0, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("empty ReadRange of a deleted object: %v, want fs.ErrNotExist", err)
	}
	for _, bad := range []string{"", "/abs", "a/../b", "../x", "a//b"} {
		if err := s.Put(ctx, bad, bytes.NewReader(nil), 0); err == nil {
			t.Errorf("Put(%q) accepted", bad)
		}
	}
}

// Objects larger than a part go up as multipart uploads, from a stream of
// unknown length and from a file, and read back whole and across part
// boundaries.
func TestS3_Multipart(t *testing.T) {
	ctx := testContext(t)
	s, _, _ := newS3(t, "")
	data := make([]byte, 40<<20+12345)
	rand.Read(data)

	if err := s.Put(ctx, "base/1/stream.copy.lz4", bytes.NewReader(data), -1); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.PutFile(ctx, "base/1/file.copy.lz4", path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("PutFile removed its source: %v", err)
	}
	for _, name := range []string{"base/1/stream.copy.lz4", "base/1/file.copy.lz4"} {
		if got := readAll(t, s, name, 0, -1); !bytes.Equal(got, data) {
			t.Errorf("%s: read back %d bytes, not what was put", name, len(got))
		}
		off := int64(16<<20 - 100)
		if got := readAll(t, s, name, off, 200); !bytes.Equal(got, data[off:off+200]) {
			t.Errorf("%s: range across the first part boundary differs", name)
		}
		info, err := s.Stat(ctx, name)
		if err != nil || info.Size != int64(len(data)) {
			t.Errorf("%s: Stat = %+v, %v", name, info, err)
		}
	}
}

// Each operator error is one line that says what to fix, wraps its kind,
// and never shows the secret.
func TestS3_Errors(t *testing.T) {
	srv, bucket := s3test.Bucket(t)
	dead := freeEndpoint(t)
	tests := []struct {
		name     string
		cfg      storage.S3Config
		access   string
		secret   string
		want     error
		wantText string
	}{
		{"bucket missing", storage.S3Config{Bucket: "no-such-bucket", Endpoint: srv.Endpoint()}, srv.AccessKey, srv.SecretKey, storage.ErrNoBucket, "create it, or fix archiveUrl"},
		{"wrong secret", storage.S3Config{Bucket: bucket, Endpoint: srv.Endpoint()}, srv.AccessKey, "wrong-secret-0123456789", storage.ErrAccessDenied, "AWS_SECRET_ACCESS_KEY"},
		{"unknown key", storage.S3Config{Bucket: bucket, Endpoint: srv.Endpoint()}, "AKNOSUCHKEY", "wrong-secret-0123456789", storage.ErrAccessDenied, "AWS_ACCESS_KEY_ID"},
		{"no credentials", storage.S3Config{Bucket: bucket, Endpoint: srv.Endpoint()}, "", "", storage.ErrAccessDenied, "AWS_ACCESS_KEY_ID"},
		{"endpoint unreachable", storage.S3Config{Bucket: bucket, Endpoint: dead}, srv.AccessKey, srv.SecretKey, storage.ErrUnreachable, "check s3Endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setCredentials(t, tt.access, tt.secret)
			tt.cfg.Region, tt.cfg.ForcePathStyle = s3test.Region, true
			s, err := storage.NewS3(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx := testContext(t)
			errs := map[string]error{"check": s.Check(ctx)}
			errs["put"] = s.Put(ctx, "segments/00000001.lbs", strings.NewReader("x"), 1)
			_, errs["stat"] = s.Stat(ctx, "segments/00000001.lbs")
			_, errs["list"] = s.List(ctx, "")
			for op, err := range errs {
				if !errors.Is(err, tt.want) {
					t.Errorf("%s: %v, want %v", op, err, tt.want)
					continue
				}
				msg := err.Error()
				t.Logf("%s: %s", op, msg)
				if strings.Contains(msg, "\n") || !strings.Contains(msg, tt.wantText) {
					t.Errorf("%s: %q: want one line naming %q", op, msg, tt.wantText)
				}
				if strings.Contains(msg, srv.SecretKey) || (tt.secret != "" && strings.Contains(msg, tt.secret)) {
					t.Errorf("%s: the error shows the secret: %q", op, msg)
				}
			}
		})
	}
}

// The shared credentials file and its profiles work as for the AWS tools.
func TestS3_SharedCredentialsFile(t *testing.T) {
	srv, bucket := s3test.Bucket(t)
	setCredentials(t, "", "")
	file := filepath.Join(t.TempDir(), "credentials")
	content := "[default]\naws_access_key_id = AKWRONG\naws_secret_access_key = wrong\n\n[lbt]\naws_access_key_id = " + srv.AccessKey + "\naws_secret_access_key = " + srv.SecretKey + "\n"
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", file)
	t.Setenv("AWS_PROFILE", "lbt")
	s, err := storage.NewS3(storage.S3Config{Bucket: bucket, Endpoint: srv.Endpoint(), Region: s3test.Region, ForcePathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(testContext(t)); err != nil {
		t.Fatal(err)
	}
}

// freeEndpoint is an http endpoint on a loopback port nothing listens on.
func freeEndpoint(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "http://" + l.Addr().String()
}
