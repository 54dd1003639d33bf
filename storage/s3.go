package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Errors of an object store that the caller can tell apart; each S3 error
// wraps one of them and says what to fix.
var (
	ErrNoBucket     = errors.New("bucket does not exist")
	ErrAccessDenied = errors.New("credentials refused")
	ErrUnreachable  = errors.New("object store unreachable")
)

// S3Config says where an S3-compatible store is. Credentials are not part
// of it: they come from the standard AWS environment variables
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) or the
// shared credentials file (AWS_SHARED_CREDENTIALS_FILE, AWS_PROFILE), so
// that they are never in lbt's configuration, logs or errors.
type S3Config struct {
	Bucket string
	// Prefix is prepended to every name, without its slashes at either
	// end; empty for the bucket's root.
	Prefix string
	// Endpoint is a URL (http://127.0.0.1:7070) or a host[:port], which
	// means https; empty means AWS S3 itself.
	Endpoint       string
	Region         string
	ForcePathStyle bool
}

// partSize is the size of the parts of a multipart upload whose length is
// not known in advance (minio-go would otherwise buffer parts of 512 MiB to
// reach its 5 TiB limit): it bounds memory to one part per upload and the
// object to 10,000 parts, 156 GiB. Callers that know the size, as PutFile
// does, get parts chosen for it.
const partSize = 16 << 20

// S3 is a Store in an S3-compatible object store. An object is written by
// one PUT, or by a multipart upload that becomes visible only when it
// completes, so that a reader never sees a part of one; the store holds it
// durably when the request returns.
type S3 struct {
	client   *minio.Client
	core     *minio.Core
	bucket   string
	prefix   string // "" or ending in "/"
	endpoint string // for errors
	read     atomic.Int64
}

// BytesRead is how many object bytes ReadRange has delivered so far: what
// a restore from the store downloaded.
func (s *S3) BytesRead() int64 { return s.read.Load() }

// countingReader counts what it reads into n.
type countingReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (r countingReader) Read(p []byte) (int, error) {
	k, err := r.ReadCloser.Read(p)
	r.n.Add(int64(k))
	return k, err
}

// NewS3 returns the store that cfg describes. It sends no request: Check
// does.
func NewS3(cfg S3Config) (*S3, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("s3: no bucket")
	}
	host, secure, err := parseEndpoint(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	lookup := minio.BucketLookupAuto
	if cfg.ForcePathStyle {
		lookup = minio.BucketLookupPath
	}
	// No IAM provider: instance metadata is a network address lbt has no
	// business calling unless told; environment and shared file only.
	creds := credentials.NewChainCredentials([]credentials.Provider{
		&credentials.EnvAWS{},
		&credentials.FileAWSCredentials{},
	})
	client, err := minio.New(host, &minio.Options{
		Creds:        creds,
		Secure:       secure,
		Region:       cfg.Region,
		BucketLookup: lookup,
		// A few quick retries inside one request; the uploader retries
		// with its own, longer backoff.
		MaxRetries: 3,
	})
	if err != nil {
		return nil, fmt.Errorf("s3: endpoint %s: %w", host, err)
	}
	prefix := strings.Trim(cfg.Prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	scheme := "https://"
	if !secure {
		scheme = "http://"
	}
	return &S3{
		client:   client,
		core:     &minio.Core{Client: client},
		bucket:   cfg.Bucket,
		prefix:   prefix,
		endpoint: scheme + host,
	}, nil
}

// parseEndpoint returns the host[:port] of endpoint and whether it is
// reached over TLS.
func parseEndpoint(endpoint string) (host string, secure bool, err error) {
	if endpoint == "" {
		return "s3.amazonaws.com", true, nil
	}
	if !strings.Contains(endpoint, "://") {
		return endpoint, true, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", false, fmt.Errorf("s3Endpoint %q: %w", endpoint, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", false, fmt.Errorf("s3Endpoint %q: the scheme must be http or https", endpoint)
	case u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil:
		return "", false, fmt.Errorf("s3Endpoint %q: want scheme://host[:port] and nothing else", endpoint)
	}
	return u.Host, u.Scheme == "https", nil
}

// String names the store for logs: the bucket and prefix, never credentials.
func (s *S3) String() string {
	return "s3://" + s.bucket + "/" + strings.TrimSuffix(s.prefix, "/")
}

// Check sends one request to see that the endpoint answers, the
// credentials are accepted and the bucket exists: a listing of one key,
// since the answer to a HEAD has no body to tell a missing bucket from
// refused credentials.
func (s *S3) Check(ctx context.Context) error {
	return s.check(ctx, "check", "")
}

// check is Check for the error of op on name.
func (s *S3) check(ctx context.Context, op, name string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The first answer is enough: an error, a key, or none (closed).
	if oi, ok := <-s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix, MaxKeys: 1}); ok && oi.Err != nil {
		return s.wrap(op, name, oi.Err)
	}
	return nil
}

func (s *S3) key(name string) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	return s.prefix + name, nil
}

// Put stores r under name: in one request when size is known and below a
// part, else as a multipart upload of parts of partSize.
func (s *S3) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	key, err := s.key(name)
	if err != nil {
		return err
	}
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream"}
	if size < 0 {
		opts.PartSize = partSize
	}
	if _, err := s.client.PutObject(ctx, s.bucket, key, r, size, opts); err != nil {
		return s.wrap("put", name, err)
	}
	return nil
}

// PutFile uploads the local file at path under name, in parts sized for
// it, each retried on its own. path stays in place.
func (s *S3) PutFile(ctx context.Context, name, path string) error {
	key, err := s.key(name)
	if err != nil {
		return err
	}
	if _, err := s.client.FPutObject(ctx, s.bucket, key, path, minio.PutObjectOptions{ContentType: "application/octet-stream"}); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("put %s from %s: %w", name, path, err)
		}
		return s.wrap("put", name, err)
	}
	return nil
}

// ReadRange reads length bytes of name from off, or to the end when length
// is negative, in one ranged GET. A range that begins at or past the end
// reads nothing.
func (s *S3) ReadRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	key, err := s.key(name)
	if err != nil {
		return nil, err
	}
	if off < 0 {
		return nil, fmt.Errorf("read %s: negative offset %d", name, off)
	}
	var opts minio.GetObjectOptions
	switch {
	case length == 0:
		if _, err := s.Stat(ctx, name); err != nil {
			return nil, err
		}
		return io.NopCloser(strings.NewReader("")), nil
	case length > 0:
		err = opts.SetRange(off, off+length-1)
	case off > 0:
		err = opts.SetRange(off, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	body, _, _, err := s.core.GetObject(ctx, s.bucket, key, opts)
	if err != nil {
		if minio.ToErrorResponse(err).Code == "InvalidRange" {
			return io.NopCloser(strings.NewReader("")), nil
		}
		return nil, s.wrap("read", name, err)
	}
	return countingReader{body, &s.read}, nil
}

// Stat describes name with one HEAD request.
func (s *S3) Stat(ctx context.Context, name string) (Info, error) {
	key, err := s.key(name)
	if err != nil {
		return Info{}, err
	}
	oi, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		err = s.wrap("stat", name, err)
		if errors.Is(err, fs.ErrNotExist) {
			// A HEAD's 404 may also mean no bucket, or (with some
			// servers) an unknown access key: ask with a body.
			if cerr := s.check(ctx, "stat", name); cerr != nil {
				return Info{}, cerr
			}
		}
		return Info{}, err
	}
	return Info{Name: name, Size: oi.Size, ModTime: oi.LastModified}, nil
}

// List describes the objects whose names begin with prefix, in name order
// (S3 lists keys in byte order), one request per 1,000 objects.
func (s *S3) List(ctx context.Context, prefix string) ([]Info, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var infos []Info
	for oi := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true}) {
		if oi.Err != nil {
			return nil, s.wrap("list", prefix, oi.Err)
		}
		infos = append(infos, Info{Name: strings.TrimPrefix(oi.Key, s.prefix), Size: oi.Size, ModTime: oi.LastModified})
	}
	return infos, nil
}

// Delete removes name; S3 answers a delete of a missing key with success.
func (s *S3) Delete(ctx context.Context, name string) error {
	key, err := s.key(name)
	if err != nil {
		return err
	}
	if err := s.client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		return s.wrap("delete", name, err)
	}
	return nil
}

// wrap turns a client error into one line that names the object, the
// store and, for the errors an operator fixes, what to do; the error wraps
// fs.ErrNotExist, ErrNoBucket, ErrAccessDenied or ErrUnreachable when it is
// one of those.
func (s *S3) wrap(op, name string, err error) error {
	what := "s3://" + s.bucket + "/" + s.prefix + name
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s %s: %w", op, what, err)
	}
	var netErr net.Error
	var opErr *net.OpError
	var urlErr *url.Error
	if errors.As(err, &opErr) || errors.As(err, &netErr) || errors.As(err, &urlErr) {
		return fmt.Errorf("%s %s: %w at %s (%v): check s3Endpoint and that the store is up", op, what, ErrUnreachable, s.endpoint, rootCause(err))
	}
	resp := minio.ToErrorResponse(err)
	switch resp.Code {
	case "NoSuchKey", "NotFound":
		if name != "" {
			return fmt.Errorf("%s %s: %w", op, what, fs.ErrNotExist)
		}
	case "NoSuchBucket":
		return fmt.Errorf("%s %s: %w at %s: create it, or fix archiveUrl", op, what, ErrNoBucket, s.endpoint)
	// XAdminUserNotFound is versitygw's answer to an unknown access key.
	case "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken", "Forbidden", "XAdminUserNotFound":
		return fmt.Errorf("%s %s: %w by %s (%s): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the shared credentials file and AWS_PROFILE", op, what, ErrAccessDenied, s.endpoint, resp.Code)
	}
	// minio-go reports missing credentials as a plain error before
	// sending anything.
	if strings.Contains(err.Error(), "Access Key Id you provided does not exist") {
		return fmt.Errorf("%s %s: %w by %s: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the shared credentials file and AWS_PROFILE", op, what, ErrAccessDenied, s.endpoint)
	}
	return fmt.Errorf("%s %s: %w", op, what, err)
}

// rootCause returns the innermost error of a network failure, such as
// "connection refused", without the request URL around it.
func rootCause(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}
