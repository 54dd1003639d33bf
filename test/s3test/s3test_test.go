package s3test_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"lbt/test/s3test"
)

func TestMain(m *testing.M) { os.Exit(s3test.Main(m)) }

// TestServer puts and reads back an object, then halts and resumes the
// server and reads it again.
func TestServer(t *testing.T) {
	s, bucket := s3test.Bucket(t)
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	want := []byte("hello, bucket")
	if _, err := c.PutObject(ctx, bucket, "a/b", bytes.NewReader(want), int64(len(want)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	read := func() []byte {
		t.Helper()
		o, err := c.GetObject(ctx, bucket, "a/b", minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		got, err := io.ReadAll(o)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := read(); !bytes.Equal(got, want) {
		t.Fatalf("read %q, want %q", got, want)
	}

	s.Halt()
	if _, err := c.StatObject(ctx, bucket, "a/b", minio.StatObjectOptions{}); err == nil {
		t.Fatal("stat on a halted server succeeded")
	}
	if err := s.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if got := read(); !bytes.Equal(got, want) {
		t.Fatalf("after resume read %q, want %q", got, want)
	}
}

// TestWrongCredentials: the server refuses a client with other keys.
func TestWrongCredentials(t *testing.T) {
	s, bucket := s3test.Bucket(t)
	c, err := minio.New(s.Host(), &minio.Options{
		Creds:  credentials.NewStaticV4(s.AccessKey, "not-the-secret", ""),
		Region: s3test.Region,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.BucketExists(ctx, bucket); err == nil {
		t.Fatal("wrong secret accepted")
	}
}
