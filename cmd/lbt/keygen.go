package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"lbt/catalog"
	"lbt/config"
	"lbt/crypt"
)

type keygenCmd struct {
	Output      string `short:"o" required:"" type:"path" placeholder:"FILE" help:"Write the new identity (secret key) to FILE, mode 0600; FILE must not exist."`
	PostQuantum bool   `name:"post-quantum" help:"A post-quantum hybrid key (ML-KEM-768 with X25519, age1pq1...), instead of X25519 (age1...). The two kinds cannot be mixed in one encryptRecipients list."`
}

func (cmd *keygenCmd) Help() string {
	return `Writes a new age identity to FILE and prints its recipient (public key) on standard output. Put the recipient into encryptRecipients: the daemon needs only that. Keep FILE apart from the archive (the archive without it cannot be read) and name it in decryptIdentityFile where lbt restores, inspects, verifies data or rebuilds the catalog. To rotate keys, make a new one, replace the recipient in encryptRecipients, and append the new identity to the identity file: files written before stay readable with the old key.`
}

func (cmd *keygenCmd) Run(ctx context.Context, g *Globals) error {
	id, rcpt, err := crypt.Generate(cmd.PostQuantum)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(cmd.Output, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return usageError{fmt.Errorf("keygen: %s exists: lbt keygen writes a new file only (append a new key to an identity file with cat)", cmd.Output)}
	}
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	_, err = fmt.Fprintf(f, "# created: %s\n# public key: %s\n%s\n", time.Now().UTC().Format(time.RFC3339), rcpt, id)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(cmd.Output)
		return fmt.Errorf("keygen: %w", err)
	}
	fmt.Fprintln(g.stdout, rcpt)
	return nil
}

// openArchive opens the archive of cfg (for writing when write) with the
// encryption keys cfg names. A command that reads the archive's contents
// passes contents, so that a missing or wrong identity is one line before
// it starts.
func openArchive(ctx context.Context, cfg config.Config, write, contents bool) (*catalog.Catalog, error) {
	keys, err := cfg.Keys()
	if err != nil {
		return nil, usageError{err}
	}
	open := catalog.OpenReadOnly
	if write {
		open = catalog.Open
	}
	cat, err := open(ctx, cfg.ArchiveDir)
	if err != nil {
		return nil, err
	}
	if err := readMissingFromBucket(cat, cfg); err != nil {
		cat.Close()
		return nil, err
	}
	if err := useKeys(ctx, cat, keys, contents); err != nil {
		cat.Close()
		return nil, err
	}
	return cat, nil
}

// useKeys gives cat the configured keys and, for a command that reads the
// archive's contents, checks that the identity opens its files.
func useKeys(ctx context.Context, cat *catalog.Catalog, keys *crypt.Keys, contents bool) error {
	if err := cat.UseKeys(ctx, keys); err != nil {
		return usageError{err}
	}
	if contents {
		return cat.CheckIdentity(ctx)
	}
	return nil
}
