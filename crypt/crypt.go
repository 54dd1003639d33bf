// Package crypt is the archive's encryption envelope: the age recipients lbt
// encrypts to, the identities it decrypts with, and the two shapes an
// encrypted archive file takes (docs/FORMAT.md, "Format 4: encryption").
//
// A file written whole (a basebackup, a sidecar, a catalog snapshot) is a
// standard age file: age's header wraps a random file key to every
// recipient, and the payload is age's STREAM of 64 KiB chunks, each sealed
// with ChaCha20-Poly1305 under a nonce made of its index and a last-chunk
// flag, so that any chunk can be read and checked alone and truncation or
// reordering fails. The age command line tool decrypts them.
//
// A segment is appended blob by blob and must stay readable up to its last
// complete blob after a crash, which a STREAM cannot do. Its header carries
// a key block (a small age file whose plaintext is the segment's random
// 32-byte data key), and each blob is a record sealed alone with
// XChaCha20-Poly1305 under that key (BlobKey).
//
// A nil *Keys is a plaintext archive: its methods pass data through.
package crypt

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"filippo.io/age"
)

// ageMagic begins every age file.
const ageMagic = "age-encryption.org/v1\n"

// ErrNoKey reports an encrypted file that the configured identities cannot
// open, or no identity configured at all.
var ErrNoKey = errors.New("archive is encrypted")

// Keys are what an encrypted archive is written to and read with. A Keys
// with no recipients cannot write, one with no identities cannot read.
type Keys struct {
	recipients   []age.Recipient
	identities   []age.Identity
	identityFile string
}

// New parses age recipients (public keys, "age1..." or "age1pq1...") and
// reads the identities (secret keys, one a line; "#" comments) of
// identityFile. Either may be empty.
func New(recipients []string, identityFile string) (*Keys, error) {
	k := &Keys{identityFile: identityFile}
	for i, s := range recipients {
		s = strings.TrimSpace(s)
		rs, err := age.ParseRecipients(strings.NewReader(s))
		if err != nil || len(rs) != 1 {
			// age's message would quote no key; say which entry it was.
			return nil, fmt.Errorf("encryptRecipients[%d] is not an age public key (age1...: lbt keygen prints one)", i)
		}
		k.recipients = append(k.recipients, rs[0])
	}
	if identityFile != "" {
		f, err := os.Open(identityFile)
		if err != nil {
			return nil, fmt.Errorf("decryptIdentityFile: %w", err)
		}
		defer f.Close()
		ids, err := age.ParseIdentities(f)
		if err != nil {
			return nil, fmt.Errorf("decryptIdentityFile %s: %v (it holds age secret keys, AGE-SECRET-KEY-..., one a line: lbt keygen writes one)", identityFile, err)
		}
		k.identities = ids
	}
	return k, nil
}

// Writes reports whether k has recipients to encrypt new files to.
func (k *Keys) Writes() bool { return k != nil && len(k.recipients) > 0 }

// Reads reports whether k has identities to decrypt with.
func (k *Keys) Reads() bool { return k != nil && len(k.identities) > 0 }

// Configured reports whether either setting is present.
func (k *Keys) Configured() bool { return k.Writes() || k.Reads() }

// noKey is the one line for a file k cannot open.
func (k *Keys) noKey() error {
	if !k.Reads() {
		return fmt.Errorf("%w: decryptIdentityFile is not set (set it to the file lbt keygen wrote)", ErrNoKey)
	}
	return fmt.Errorf("%w: decryptIdentityFile %s does not hold a key for it", ErrNoKey, k.identityFile)
}

// decryptErr maps age's errors on opening a header to ours.
func (k *Keys) decryptErr(err error) error {
	var nm *age.NoIdentityMatchError
	if errors.As(err, &nm) {
		return k.noKey()
	}
	return fmt.Errorf("%w: %v", ErrCorrupt, err)
}

// ErrCorrupt reports encrypted bytes that do not authenticate: damaged,
// truncated, reordered or not written by lbt.
var ErrCorrupt = errors.New("encrypted data does not authenticate")

// Writer returns a writer that encrypts what is written to it into w as an
// age file; Close writes the last chunk (it does not close w). With a nil k
// it writes to w as is.
func (k *Keys) Writer(w io.Writer) (io.WriteCloser, error) {
	if k == nil {
		return nopCloser{w}, nil
	}
	if !k.Writes() {
		return nil, errors.New("archive is encrypted: encryptRecipients is not set (lbt keygen prints a public key)")
	}
	ew, err := age.Encrypt(w, k.recipients...)
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	return ew, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// Reader returns the plaintext of the age file r. With a nil k it returns r
// after checking that it is no age file: a plaintext archive holds none.
// Reading fails at the first chunk that does not authenticate, and at the
// end of a file cut short.
func (k *Keys) Reader(r io.Reader) (io.Reader, error) {
	br := &peekReader{r: r}
	encrypted, err := br.isAge()
	if err != nil {
		return nil, err
	}
	if k == nil {
		if encrypted {
			return nil, errors.New("file is encrypted, but the catalog says the archive is not")
		}
		return br, nil
	}
	if !encrypted {
		return nil, fmt.Errorf("%w: file is not encrypted, but the archive is", ErrCorrupt)
	}
	if !k.Reads() {
		return nil, k.noKey()
	}
	pr, err := age.Decrypt(br, k.identities...)
	if err != nil {
		return nil, k.decryptErr(err)
	}
	return corruptReader{pr}, nil
}

// ReaderAt gives random access to the plaintext of the age file r of size
// bytes, and the plaintext's size; only the chunks a read needs are read and
// checked. With a nil k it returns r and size.
func (k *Keys) ReaderAt(r io.ReaderAt, size int64) (io.ReaderAt, int64, error) {
	if k == nil {
		return r, size, nil
	}
	if !k.Reads() {
		return nil, 0, k.noKey()
	}
	pr, n, err := age.DecryptReaderAt(r, size, k.identities...)
	if err != nil {
		return nil, 0, k.decryptErr(err)
	}
	return pr, n, nil
}

// Seal encrypts data whole into an age file.
func (k *Keys) Seal(data []byte) ([]byte, error) {
	var b bytes.Buffer
	w, err := k.Writer(&b)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(data); err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	return b.Bytes(), nil
}

// Open decrypts an age file read whole.
func (k *Keys) Open(data []byte) ([]byte, error) {
	r, err := k.Reader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

// corruptReader marks age's payload errors (a chunk that does not
// authenticate, a file cut short) as ErrCorrupt.
type corruptReader struct{ r io.Reader }

func (c corruptReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return n, err
}

// peekReader reads the first bytes of r to tell an age file from another.
type peekReader struct {
	r    io.Reader
	head []byte
}

func (p *peekReader) isAge() (bool, error) {
	buf := make([]byte, len(ageMagic))
	n, err := io.ReadFull(p.r, buf)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return false, err
	}
	p.head = buf[:n]
	return string(p.head) == ageMagic, nil
}

func (p *peekReader) Read(b []byte) (int, error) {
	if len(p.head) > 0 {
		n := copy(b, p.head)
		p.head = p.head[n:]
		return n, nil
	}
	return p.r.Read(b)
}

// IsAge reports whether b begins as an age file does.
func IsAge(b []byte) bool { return bytes.HasPrefix(b, []byte(ageMagic)) }

// Generate makes a new identity and returns it (the secret key) and its
// recipient (the public key). A post-quantum identity is a hybrid of
// ML-KEM-768 and X25519; its recipients cannot be mixed with X25519 ones in
// one encryptRecipients list (age refuses: the file would be only as strong
// as its weakest recipient).
func Generate(postQuantum bool) (identity, recipient string, err error) {
	if postQuantum {
		id, err := age.GenerateHybridIdentity()
		if err != nil {
			return "", "", fmt.Errorf("generate key: %w", err)
		}
		return id.String(), id.Recipient().String(), nil
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return "", "", fmt.Errorf("generate key: %w", err)
	}
	return id.String(), id.Recipient().String(), nil
}

// MissingIdentity is the error for an encrypted file met with no identity
// configured.
func MissingIdentity() error { return (*Keys)(nil).noKey() }

// IdentityFile is the file the identities were read from.
func (k *Keys) IdentityFile() string {
	if k == nil {
		return ""
	}
	return k.identityFile
}
