package config

import (
	"net/url"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Redacted returns the configuration as YAML in the config file's format,
// with db.password, any password inside db.dsn and any user information in
// archiveUrl (which Validate refuses) replaced by ****, and
// tempDir shown as EffectiveTempDir. It is what `lbt backup --check-config`
// prints.
func (c Config) Redacted() string {
	c.TempDir = c.EffectiveTempDir()
	if c.DB.Password != "" {
		c.DB.Password = mask
	}
	c.DB.DSN = redactDSN(c.DB.DSN)
	c.ArchiveURL = redactURL(c.ArchiveURL)
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(encodeStruct(reflect.ValueOf(c))); err != nil {
		// Only strings, numbers and booleans are encoded.
		panic("config: encoding the configuration: " + err.Error())
	}
	return b.String()
}

// encodeStruct builds the YAML mapping of the struct v, keys in declaration
// order. yaml.Marshal alone would print durations as nanoseconds.
func encodeStruct(v reflect.Value) *yaml.Node {
	m := &yaml.Node{Kind: yaml.MappingNode}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if !sf.IsExported() || tag == "" || tag == "-" {
			continue
		}
		m.Content = append(m.Content, scalarNode("!!str", tag), encodeValue(v.Field(i)))
	}
	return m
}

func encodeValue(f reflect.Value) *yaml.Node {
	switch {
	case f.Type() == durationType:
		return scalarNode("!!str", formatDuration(time.Duration(f.Int())))
	case f.Type() == byteSizeType:
		return scalarNode("!!str", ByteSize(f.Int()).String())
	case f.Kind() == reflect.String:
		return scalarNode("!!str", f.String())
	case f.Kind() == reflect.Bool:
		return scalarNode("!!bool", strconv.FormatBool(f.Bool()))
	case f.Kind() == reflect.Int:
		return scalarNode("!!int", strconv.FormatInt(f.Int(), 10))
	case f.Kind() == reflect.Slice:
		m := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
		for i := range f.Len() {
			m.Content = append(m.Content, scalarNode("!!str", f.Index(i).String()))
		}
		return m
	case f.Kind() == reflect.Map:
		m := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
		keys := f.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		for _, k := range keys {
			m.Content = append(m.Content, scalarNode("!!str", k.String()), scalarNode("!!str", f.MapIndex(k).String()))
		}
		return m
	case f.Kind() == reflect.Struct:
		return encodeStruct(f)
	default:
		panic("config: no encoder for field type " + f.Type().String())
	}
}

func scalarNode(tag, value string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value}
}

// secretSpan is a password inside a connection string: its raw text at
// s[start:end] and its decoded value.
type secretSpan struct {
	start, end int
	raw, value string
}

// redactDSN replaces the passwords in a connection string with ****. A
// string that cannot be scanned is masked whole rather than risk a leak.
func redactDSN(dsn string) string {
	if dsn == "" {
		return ""
	}
	spans, ok := scanDSNSecrets(dsn)
	if !ok {
		return mask
	}
	var b strings.Builder
	last := 0
	for _, sp := range spans {
		b.WriteString(dsn[last:sp.start])
		b.WriteString(mask)
		last = sp.end
	}
	b.WriteString(dsn[last:])
	return b.String()
}

// dsnSecrets returns the passwords found in a connection string.
func dsnSecrets(dsn string) []secretSpan {
	spans, _ := scanDSNSecrets(dsn)
	return spans
}

func scanDSNSecrets(dsn string) ([]secretSpan, bool) {
	if isURL(dsn) {
		return scanURLSecrets(dsn)
	}
	return scanKeywordValueSecrets(dsn)
}

// isPasswordKey reports whether a connection parameter holds a secret.
func isPasswordKey(k string) bool {
	return k == "password" || k == "sslpassword"
}

// scanKeywordValueSecrets follows libpq's keyword/value syntax: key = value,
// the value either single-quoted with \ escapes, or running to the next
// space with \ escapes.
func scanKeywordValueSecrets(s string) ([]secretSpan, bool) {
	var spans []secretSpan
	isSpace := func(c byte) bool { return strings.IndexByte(" \t\n\r\v\f", c) >= 0 }
	i := 0
	for {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i == len(s) {
			return spans, true
		}
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 {
			return spans, false
		}
		key := strings.TrimSpace(s[i : i+eq])
		i += eq + 1
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		start := i
		var val strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			for i < len(s) && s[i] != '\'' {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				val.WriteByte(s[i])
				i++
			}
			if i == len(s) {
				return spans, false // unterminated quote
			}
			i++
		} else {
			for i < len(s) && !isSpace(s[i]) {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				val.WriteByte(s[i])
				i++
			}
		}
		if isPasswordKey(key) {
			spans = append(spans, secretSpan{start: start, end: i, raw: s[start:i], value: val.String()})
		}
	}
}

// scanURLSecrets finds the password of the user info and the password
// query parameters of a connection URL, the way libpq splits it.
func scanURLSecrets(s string) ([]secretSpan, bool) {
	var spans []secretSpan
	off := strings.Index(s, "://") + len("://")
	rest := s[off:]
	if i := strings.IndexAny(rest, "@/"); i >= 0 && rest[i] == '@' {
		if j := strings.IndexByte(rest[:i], ':'); j >= 0 && j+1 < i {
			spans = append(spans, urlSpan(s, off+j+1, off+i))
		}
		off += i + 1
		rest = rest[i+1:]
	}
	q := strings.IndexByte(rest, '?')
	if q < 0 {
		return spans, true
	}
	pos := off + q + 1
	for _, pair := range strings.Split(s[pos:], "&") {
		k, _, found := strings.Cut(pair, "=")
		key, err := url.PathUnescape(k)
		if !found || err != nil {
			return spans, false
		}
		if isPasswordKey(strings.TrimSpace(key)) {
			spans = append(spans, urlSpan(s, pos+len(k)+1, pos+len(pair)))
		}
		pos += len(pair) + 1
	}
	return spans, true
}

func urlSpan(s string, start, end int) secretSpan {
	raw := s[start:end]
	value, err := url.PathUnescape(raw)
	if err != nil {
		value = raw
	}
	return secretSpan{start: start, end: end, raw: raw, value: value}
}
