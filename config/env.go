package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unicode"
)

// envDSN and envSlotShort are the variables named against the rule of
// envName.
const (
	envDSN       = "LBT_DSN"
	envSlotShort = "LBT_SLOT"
)

// envName returns the environment variable that overrides the setting with
// the given key ("archiveDir" gives LBT_ARCHIVE_DIR).
func envName(key string) string {
	if key == "db.dsn" {
		return envDSN
	}
	var b strings.Builder
	b.WriteString("LBT_")
	prevLower := false
	for _, r := range key {
		switch {
		case r == '.':
			b.WriteByte('_')
			prevLower = false
		case unicode.IsUpper(r):
			if prevLower {
				b.WriteByte('_')
			}
			b.WriteRune(r)
			prevLower = false
		default:
			b.WriteRune(unicode.ToUpper(r))
			prevLower = unicode.IsLower(r) || unicode.IsDigit(r)
		}
	}
	return b.String()
}

// ApplyEnv overrides settings with environment variables, read through
// getenv (os.Getenv outside tests). Every setting has one, named LBT_ and
// the key in upper snake case, nested keys joined by _:
//
//	archiveDir     LBT_ARCHIVE_DIR
//	slotname       LBT_SLOTNAME (or the short LBT_SLOT)
//	deltasPerFile  LBT_DELTAS_PER_FILE
//	db.host        LBT_DB_HOST
//	db.password    LBT_DB_PASSWORD
//
// with one exception: db.dsn is LBT_DSN, and like the --dsn flag it replaces
// all of db.* from the file, so that a password meant for one server is
// never sent to another; LBT_DB_* variables apply on top of it.
// db.runtimeParams has no variable. An empty variable counts as unset.
// Values are parsed like the file's: booleans true or false (also yes/no,
// on/off, 1/0), durations like 10m, 24h or 7d.
func (c *Config) ApplyEnv(getenv func(string) string) error {
	if dsn := getenv(envDSN); dsn != "" {
		c.DB = DBConfig{DSN: dsn}
	}
	if short := getenv(envSlotShort); short != "" {
		if long := getenv(envName("slotname")); long != "" && long != short {
			return fmt.Errorf("environment: %s and %s disagree; set one", envSlotShort, envName("slotname"))
		}
		c.SlotName = short
	}

	for _, s := range settings(reflect.ValueOf(c).Elem(), "") {
		if s.key == "db.dsn" {
			continue // applied first, above
		}
		name := envName(s.key)
		raw := getenv(name)
		if raw == "" {
			continue
		}
		if err := setFromString(s.value, raw); err != nil {
			return fmt.Errorf("environment %s: %s, got %s", name, err, show(s.key, raw))
		}
	}
	c.normalize()
	return nil
}

// setting is one leaf of the configuration: its dotted key and its field.
type setting struct {
	key   string
	value reflect.Value
}

// settings lists the leaf settings of the struct v that can be set from a
// single string, in declaration order.
func settings(v reflect.Value, prefix string) []setting {
	var out []setting
	for tag, f := range yamlFields(v) {
		switch f.Kind() {
		case reflect.Struct:
			out = append(out, settings(f, prefix+tag+".")...)
		case reflect.Map:
			// Maps have no single-string form.
		default:
			out = append(out, setting{key: prefix + tag, value: f})
		}
	}
	return out
}

// setFromString parses s into the field f. The error says what was
// expected, without the value, which the caller may have to hide.
func setFromString(f reflect.Value, s string) error {
	switch {
	case f.Type() == durationType:
		d, err := ParseDuration(s)
		if err != nil {
			return fmt.Errorf("expected a duration like 10m, 24h or 7d")
		}
		f.SetInt(int64(d))
	case f.Type() == byteSizeType:
		b, err := parseByteSize(s)
		if err != nil {
			return err
		}
		f.SetInt(int64(b))
	case f.Kind() == reflect.String:
		f.SetString(s)
	case f.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			var ok bool
			if b, ok = yaml11Bools[s]; !ok {
				return fmt.Errorf("expected true or false")
			}
		}
		f.SetBool(b)
	case f.Kind() == reflect.Int:
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("expected an integer")
		}
		f.SetInt(int64(n))
	case f.Kind() == reflect.Slice: // a list: separated by commas or spaces
		f.Set(reflect.ValueOf(strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' })))
	default:
		panic("config: no parser for field type " + f.Type().String())
	}
	return nil
}

// isSecretKey reports whether the setting may hold a password, so that its
// value never appears in an error message or in printed output.
func isSecretKey(key string) bool {
	return key == "db.password" || key == "db.dsn"
}
