package test

import (
	"testing"

	"lbt/test/lbtrun"
	"lbt/test/pgtest"
)

func writeConfig(t *testing.T, c *pgtest.Cluster, dsn, archiveDir, slot string, extra ...string) string {
	t.Helper()
	return lbtrun.WriteConfig(t, c, lbtrun.DBName(dsn), archiveDir, slot, extra...)
}
