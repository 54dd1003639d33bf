package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"lbt/crypt"
	"lbt/storage"
)

// metaEncryption is the meta key that says an archive is encrypted ("age");
// absent, it is not. Every file of an encrypted archive is, and a reader
// refuses a plaintext one in it, as a plaintext archive refuses an
// encrypted file: neither is ever read as the other.
const metaEncryption = "encryption"

// UseKeys gives the catalog the configured encryption keys (nil or empty
// when none are configured), checking them against the archive: a setting
// that does not fit it is refused, never ignored. An archive that holds no
// segment or basebackup yet becomes encrypted when recipients are set; one
// opened for writing needs recipients, one opened for reading needs
// identities only when it reads a file's contents.
func (c *Catalog) UseKeys(ctx context.Context, k *crypt.Keys) error {
	enc, err := c.encryption(ctx)
	if err != nil {
		return err
	}
	switch {
	case !enc && k.Writes() && !c.readOnly:
		empty, err := c.holdsNoFiles(ctx)
		if err != nil {
			return err
		}
		if !empty {
			return fmt.Errorf("archive %s was created without encryption, and encryptRecipients is set: remove encryptRecipients, or archive into a new, empty archiveDir", c.dir)
		}
		if err := c.SetMeta(ctx, metaEncryption, "age"); err != nil {
			return err
		}
	case !enc && k.Configured():
		return fmt.Errorf("archive %s is not encrypted, and encryptRecipients or decryptIdentityFile is set: remove them (an archive is encrypted from its creation on, or not at all)", c.dir)
	case !enc:
		c.keys = nil
		return nil
	case !c.readOnly && !k.Writes():
		return fmt.Errorf("archive %s is encrypted: set encryptRecipients (the public keys that lbt keygen prints)", c.dir)
	}
	if k == nil {
		k = &crypt.Keys{}
	}
	c.keys = k
	return nil
}

// Keys is the archive's encryption keys for reading and writing its files:
// nil for a plaintext archive.
func (c *Catalog) Keys() *crypt.Keys { return c.keys }

// encryption reads whether the archive is encrypted.
func (c *Catalog) encryption(ctx context.Context) (bool, error) {
	var v string
	err := c.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, metaEncryption).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("catalog meta %s: %w", metaEncryption, err)
	}
	if v != "age" {
		return false, fmt.Errorf("archive %s is encrypted with %q, which this lbt does not know", c.dir, v)
	}
	return true, nil
}

// holdsNoFiles reports an archive with no segment and no basebackup yet.
func (c *Catalog) holdsNoFiles(ctx context.Context) (bool, error) {
	var n int
	err := c.db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM segment) + (SELECT count(*) FROM basebackup) + (SELECT count(*) FROM basebackup_pending)`).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("catalog files: %w", err)
	}
	return n == 0, nil
}

// CheckIdentity makes sure, before a command reads an encrypted archive's
// contents, that the identities open its newest segment (and so, in all
// likelihood, the rest: after a key rotation the identity file holds the
// old keys too), so that a missing or wrong key is one line up front rather
// than an error deep inside a restore.
func (c *Catalog) CheckIdentity(ctx context.Context) error {
	if c.keys == nil {
		return nil
	}
	if !c.keys.Reads() {
		return crypt.MissingIdentity()
	}
	var id int64
	err := c.db.QueryRowContext(ctx, `SELECT id FROM segment WHERE retired_at IS NULL AND size > ? ORDER BY id DESC LIMIT 1`, SegmentHeaderSize).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("catalog segments: %w", err)
	}
	f, err := storage.OpenReaderAt(ctx, c.store, SegmentName(id))
	if err != nil {
		return nil // reading reports it, with what needed the file
	}
	defer f.Close()
	if _, err := OpenSegmentReader(f, id, c.keys); errors.Is(err, crypt.ErrNoKey) {
		return err
	}
	return nil
}
