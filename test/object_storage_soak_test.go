//go:build soak

package test

import "testing"

// The store outage with an encrypted archive, run by make soak: its 30 s
// outage has no room in make test's budget beside the plaintext one.
func TestEncryption_StoreOutage(t *testing.T) { storeOutage(t, encryptedBucket(t)) }
