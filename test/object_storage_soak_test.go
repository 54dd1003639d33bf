//go:build soak

package test

import "testing"

// The store outage with an encrypted archive, run by make soak: its 30 s
// outage has no room in make test's budget beside the plaintext one.
func TestEncryption_StoreOutage(t *testing.T) { storeOutage(t, encryptedBucket(t)) }

// The kill -9 storm during uploads with an encrypted archive, whose daemon
// holds the recipients only: each restart seals the active segment it
// cannot append to. Run by make soak, not make test, because it fails about
// once in 40 runs with a known, not yet explained bug (issue #14): a
// restart refuses with "segment N holds data but the catalog ... has no
// segment N". Nothing is lost or deleted, but a restart after kill -9 must
// simply work; this test stays here until that is fixed.
func TestEncryption_KillDuringUploads(t *testing.T) { killDuringUploads(t, encryptedBucket(t)) }

// encryptedBucket makes a key and returns its archiveKeys.
func encryptedBucket(t *testing.T) archiveKeys {
	t.Helper()
	key, rcpt := keygen(t, t.TempDir(), "key.txt")
	return archiveKeys{daemon: []string{"encryptRecipients: [" + rcpt + "]"}, reader: []string{"decryptIdentityFile: " + key}}
}
