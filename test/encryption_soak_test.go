//go:build soak

package test

// A kill -9 storm on an encrypted archive, run by make soak: make test has
// the plaintext kill -9 test and the crash simulation of an encrypted
// archive, and the ten-minute budget has no room for both storms.

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"lbt/crypt"
	"lbt/test/lbtrun"
)

// The daemon of an encrypted archive, with the recipients only, killed with
// SIGKILL under load and restarted each time, archives every committed
// transaction exactly once: each restart seals the active segment it cannot
// append to (cutting its torn tail first) and begins a new one. Nothing on
// disk holds a marker, and the table restores equal to the source.
func TestEncryption_KillNineUnderLoad(t *testing.T) {
	c, dsn, dir := newSource(t)
	c.Exec(t, dsn, `CREATE TABLE ledger (id bigserial PRIMARY KEY, txid bigint NOT NULL, note text)`)
	key, rcpt := keygen(t, t.TempDir(), "key.txt")
	daemon := writeConfig(t, c, dsn, dir, "enc_crash", "encryptRecipients: ["+rcpt+"]")
	reader := writeConfig(t, c, dsn, dir, "enc_crash", "decryptIdentityFile: "+key)
	p := lbtrun.Start(t, "backup", "--config", daemon)
	waitArchived(t, c, dsn, dir)

	var markers []string // one connection: its transactions append in turn
	stopLoad := runLoad(t, c, dsn, 1, func(i int) string {
		b := make([]byte, 16)
		rand.Read(b)
		m := hex.EncodeToString(b)
		markers = append(markers, m)
		rows := 1 + i%5
		if i%100 == 0 {
			rows = 2000
		}
		return fmt.Sprintf(`INSERT INTO ledger (txid, note)
			SELECT txid_current(), '%s' || g FROM generate_series(1, %d) g`, m, rows)
	})
	for i := 0; i < 4; i++ {
		time.Sleep(time.Duration(400+200*i) * time.Millisecond)
		p = killNineAndRestart(t, p, daemon)
	}
	time.Sleep(time.Second)
	stopLoad()
	waitArchived(t, c, dsn, dir)
	lbtBasebackup(t, daemon, "ledger")
	// What committed, according to the server: ids 1 to max, none lost to
	// an aborted transaction.
	var want int
	fmt.Sscan(c.QueryString(t, dsn, `SELECT max(id) FROM ledger`), &want)
	if n := c.QueryString(t, dsn, `SELECT count(*) FROM ledger`); n != fmt.Sprint(want) {
		t.Fatalf("ledger holds %s rows with ids up to %d", n, want)
	}
	c.Exec(t, dsn, `DELETE FROM ledger WHERE id % 3 = 0`)
	end := recordCheckpoint(t, c, dsn, "end", map[string]string{"ledger": "ledger"})
	waitArchived(t, c, dsn, dir)
	checkNoMarkers(t, dir, markers) // the active segment of the running daemon too
	stopDaemon(t, p)
	// Each restart that got as far as its archiver sealed the segment it
	// could not append to; a kill may come before that.
	if n := countArchived(t, dir, `SELECT count(*) FROM segment WHERE sealed = 1`); n < 1 {
		t.Errorf("%d sealed segments: a restart seals the one it cannot append to", n)
	}

	keys, err := crypt.New(nil, key)
	if err != nil {
		t.Fatal(err)
	}
	_, changes := readArchiveWith(t, dir, "ledger", keys)
	inserted := map[string]int{}
	for _, ch := range changes {
		if ch.Op == "I" {
			inserted[*ch.New[0]]++
		}
	}
	for id := 1; id <= want; id++ {
		if n := inserted[fmt.Sprint(id)]; n != 1 {
			t.Fatalf("ledger row %d archived %d times", id, n)
		}
	}
	if len(inserted) != want {
		t.Fatalf("%d rows archived, the server committed %d", len(inserted), want)
	}
	if code, out := lbtrun.Run(t, "restore", "--config", reader, "--table", "ledger", "--target-table", "restored", "--quiet"); code != 0 {
		t.Fatalf("restore: exit %d:\n%s", code, out)
	}
	checkRestored(t, c, dsn, "restored", end.tables["ledger"], "restore after kills")
	checkNoMarkers(t, dir, markers)
	t.Logf("%d ledger rows archived exactly once across 4 kills; %d markers searched", want, len(markers))
}
