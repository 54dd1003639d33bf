package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// LBT's configuration keys that lbt reads under another name, converts, or
// accepts with a warning, so that an LBT config file is read unchanged.

// Keys LBT read under another name. Both the old and the new name may not be
// given together.
var keyAliases = map[string]string{
	"stagingDir":       "tempDir",          // LBT after tempDir was renamed
	"StagingDir":       "tempDir",          // LBT versions with a capitalised tag
	"messagesPerDelta": "deltasPerFile",    // LBT after deltasPerFile was renamed
	"db.runtimeparams": "db.runtimeParams", // pgx v3 ConnConfig field, lowercased by yaml.v2
}

// legacyKey handles a key LBT read that has no direct counterpart: it is
// converted, or accepted with a warning because it has no effect in lbt.
type legacyKey struct {
	// claims is the canonical setting the key sets, for duplicate
	// detection; empty if it sets none.
	claims string
	decode func(d *decoder, c *Config, key string, n *yaml.Node) error
}

var legacyKeys = map[string]legacyKey{
	// LBT's metrics port, served on all interfaces. lbt keeps it on the
	// loopback interface unless metricsAddr says otherwise.
	"prometheusPort": {claims: "metricsAddr", decode: func(d *decoder, c *Config, key string, n *yaml.Node) error {
		port, err := d.int(key, n)
		if err != nil {
			return err
		}
		if port <= 0 || port > 65535 {
			return d.errorf(n, "%s: %d is not a TCP port", key, port)
		}
		c.MetricsAddr = "127.0.0.1:" + strconv.Itoa(port)
		return nil
	}},
	// LBT's logger settings (zap): level, location, development.
	"log": {decode: decodeLBTLog},
	// LBT could confirm the position after every commit; lbt confirms it
	// only once the data is durable, which is what makes it safe.
	"sendStatusOnCommit": ignoredKey((*decoder).bool, "lbt confirms the position to the server only after the data is durable"),
	// An early LBT read a table list; lbt backs up the publication's tables.
	"tables": ignoredKey((*decoder).stringList, "lbt backs up the tables of the publication; create it FOR TABLE ... to choose tables"),
	// An early LBT read a period its code never acted on.
	"periodBetweenBackups": ignoredKey((*decoder).duration, "use basebackupSchedule for periodic basebackups"),
	// Fields of pgx v3's ConnConfig that LBT's yaml.v2 decoding exposed
	// under db and that have no meaning for lbt's connections.
	"db.usefallbacktls":       ignoredKey((*decoder).bool, "set sslmode in db.dsn instead"),
	"db.prefersimpleprotocol": ignoredKey((*decoder).bool, "lbt chooses the protocol itself"),
	"db.loglevel":             ignoredKey((*decoder).int, "use logLevel"),
}

// ignoredKey accepts a value of the type LBT read and records a warning.
func ignoredKey[T any](parse func(*decoder, string, *yaml.Node) (T, error), why string) legacyKey {
	return legacyKey{decode: func(d *decoder, c *Config, key string, n *yaml.Node) error {
		if _, err := parse(d, key, n); err != nil {
			return err
		}
		c.warnings = append(c.warnings, fmt.Sprintf("config %s:%d: %q is accepted for LBT compatibility but has no effect: %s", d.path, n.Line, key, why))
		return nil
	}}
}

// decodeLBTLog maps LBT's log block onto logLevel and logFormat.
func decodeLBTLog(d *decoder, c *Config, key string, n *yaml.Node) error {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		return d.errorf(n, "%s: expected a mapping, got %s", key, kindName(n))
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name := key + "." + k.Value
		known := []string{"level", "development", "location"}
		if !slices.Contains(known, k.Value) {
			return d.errorf(k, "unknown key %q%s", name, suggest(k.Value, known, key+"."))
		}
		if isNull(resolve(v)) {
			continue
		}
		switch k.Value {
		case "level":
			if err := d.claim("logLevel", name, k); err != nil {
				return err
			}
			s, err := d.string(name, v)
			if err != nil {
				return err
			}
			// zap's levels; the ones above error map to error.
			switch strings.ToLower(s) {
			case "":
			case "debug", "info", "warn", "error":
				c.LogLevel = strings.ToLower(s)
			case "dpanic", "panic", "fatal":
				c.LogLevel = "error"
			default:
				return d.errorf(v, "%s: unknown level %q (one of debug, info, warn, error, dpanic, panic, fatal)", name, s)
			}
		case "development":
			if err := d.claim("logFormat", name, k); err != nil {
				return err
			}
			dev, err := d.bool(name, v)
			if err != nil {
				return err
			}
			// zap's development logger wrote text, its production
			// logger JSON.
			c.LogFormat = "json"
			if dev {
				c.LogFormat = "text"
			}
		case "location":
			if _, err := d.bool(name, v); err != nil {
				return err
			}
			c.warnings = append(c.warnings, fmt.Sprintf("config %s:%d: %q is accepted for LBT compatibility but has no effect", d.path, k.Line, name))
		}
	}
	return nil
}
