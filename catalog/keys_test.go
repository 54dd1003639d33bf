package catalog_test

import (
	"context"
	"strings"
	"testing"

	"lbt/catalog"
	"lbt/crypt"
	"lbt/storage"
)

// An archive is encrypted from its creation or never: every setting that
// does not fit it is refused with the fix.
func TestUseKeys(t *testing.T) {
	ctx := context.Background()
	keys, daemon := newKeys(t, t.TempDir(), "key.txt")
	reader, err := crypt.New(nil, keys.IdentityFile())
	if err != nil {
		t.Fatal(err)
	}
	src := catalog.Source{SystemID: "1", Database: "d"}

	// A new archive becomes encrypted; plaintext settings are refused then.
	enc := t.TempDir()
	c, err := catalog.Create(ctx, enc, src)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.UseKeys(ctx, daemon); err != nil || c.Keys() == nil {
		t.Fatalf("new archive with recipients: %v", err)
	}
	c.Close()

	// A plaintext archive that holds a segment.
	plain := t.TempDir()
	c, err = catalog.Create(ctx, plain, src)
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.Begin(ctx)
	if err == nil {
		err = w.AddSegment(1, catalog.SegmentHeaderSize)
	}
	if err == nil {
		err = w.Commit()
	}
	if err != nil {
		t.Fatal(err)
	}
	c.Close()

	tests := []struct {
		name     string
		dir      string
		readOnly bool
		keys     *crypt.Keys
		want     string // "" for success
	}{
		{"encrypted, writer without recipients", enc, false, nil, "is encrypted: set encryptRecipients"},
		{"encrypted, writer with an identity only", enc, false, reader, "is encrypted: set encryptRecipients"},
		{"encrypted, reader without identity", enc, true, nil, ""},
		{"encrypted, reader", enc, true, reader, ""},
		{"encrypted, daemon", enc, false, daemon, ""},
		{"plaintext, recipients", plain, false, daemon, "was created without encryption, and encryptRecipients is set: remove encryptRecipients"},
		{"plaintext, identity", plain, true, reader, "is not encrypted, and encryptRecipients or decryptIdentityFile is set"},
		{"plaintext, none", plain, false, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			open := catalog.Open
			if tc.readOnly {
				open = catalog.OpenReadOnly
			}
			c, err := open(ctx, tc.dir)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			err = c.UseKeys(ctx, tc.keys)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want %q", err, tc.want)
			case tc.want == "" && (c.Keys() == nil) != (tc.dir == plain):
				t.Fatalf("Keys() is %v for the %s archive", c.Keys(), tc.dir)
			}
		})
	}

	// Without UseKeys, an encrypted archive writes nothing in plaintext.
	c, err = catalog.Open(ctx, enc)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := catalog.CreateSegment(storage.OS{}, enc, 9, c.Keys()); err == nil || !strings.Contains(err.Error(), "encryptRecipients is not set") {
		t.Fatalf("segment of an encrypted archive without keys: %v", err)
	}
}
