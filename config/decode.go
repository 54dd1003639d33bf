package config

import (
	"fmt"
	"iter"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decoder walks a parsed YAML document, so that every error can name the
// key and the line it is on.
type decoder struct {
	path string
	// seen maps a canonical key to the key that set it.
	seen map[string]seenKey
}

type seenKey struct {
	name string
	line int
}

func decodeYAML(c *Config, path string, data []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return syntaxError(path, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 { // empty file
		return nil
	}
	d := &decoder{path: path, seen: make(map[string]seenKey)}
	root := resolve(doc.Content[0])
	if isNull(root) {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		return d.errorf(root, "expected a mapping of keys to values, got %s", kindName(root))
	}
	return d.mapping(c, reflect.ValueOf(c).Elem(), root, "")
}

// yamlLineRE matches the position yaml.v3 puts into its syntax errors.
var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func syntaxError(path string, err error) error {
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("config %s:%s: %s", path, m[1], m[2])
	}
	return fmt.Errorf("config %s: %s", path, strings.TrimPrefix(msg, "yaml: "))
}

func (d *decoder) errorf(n *yaml.Node, format string, args ...any) error {
	return fmt.Errorf("config %s:%d: %s", d.path, n.Line, fmt.Sprintf(format, args...))
}

// claim records that the key node k, spelled name, sets the canonical
// setting; a second key setting the same one is an error.
func (d *decoder) claim(canonical, name string, k *yaml.Node) error {
	if first, ok := d.seen[canonical]; ok {
		if first.name == name {
			return d.errorf(k, "duplicate key %q (first given on line %d)", name, first.line)
		}
		return d.errorf(k, "%q sets the same setting as %q on line %d; keep one (%q is the current name)", name, first.name, first.line, canonical)
	}
	d.seen[canonical] = seenKey{name: name, line: k.Line}
	return nil
}

// mapping decodes the mapping n into the struct v, whose keys are prefixed
// with prefix ("db." for the db block).
func (d *decoder) mapping(c *Config, v reflect.Value, n *yaml.Node, prefix string) error {
	fields := structFields(v)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return d.errorf(k, "expected a key, got %s", kindName(k))
		}
		if k.Value == "<<" {
			return d.errorf(k, "merge keys (<<) are not supported")
		}
		name := prefix + k.Value

		lk, legacy := legacyKeys[name]
		canonical := name
		if to, ok := keyAliases[name]; ok {
			canonical = to
		}
		if legacy && lk.claims != "" {
			canonical = lk.claims
		}
		f, ok := fields[strings.TrimPrefix(canonical, prefix)]
		if !ok && !legacy {
			return d.errorf(k, "unknown key %q%s", name, suggest(k.Value, knownKeys(fields, prefix), prefix))
		}
		if err := d.claim(canonical, name, k); err != nil {
			return err
		}
		if isNull(resolve(val)) {
			// "key:" without a value keeps the default rather than
			// zeroing the setting.
			continue
		}
		var err error
		if legacy {
			err = lk.decode(d, c, name, val)
		} else {
			err = d.value(c, f, val, name)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

var durationType = reflect.TypeOf(time.Duration(0))

// value decodes n into the field f of the setting named key.
func (d *decoder) value(c *Config, f reflect.Value, n *yaml.Node, key string) error {
	n = resolve(n)
	switch {
	case f.Type() == durationType:
		v, err := d.duration(key, n)
		if err != nil {
			return err
		}
		f.SetInt(int64(v))
	case f.Type() == byteSizeType:
		n, err := d.scalar(key, n, "a size")
		if err != nil {
			return err
		}
		v, err := parseByteSize(n.Value)
		if err != nil {
			return d.errorf(n, "%s: %s: %v", key, show(key, n.Value), err)
		}
		f.SetInt(int64(v))
	case f.Kind() == reflect.String:
		v, err := d.string(key, n)
		if err != nil {
			return err
		}
		f.SetString(v)
	case f.Kind() == reflect.Bool:
		v, err := d.bool(key, n)
		if err != nil {
			return err
		}
		f.SetBool(v)
	case f.Kind() == reflect.Int:
		v, err := d.int(key, n)
		if err != nil {
			return err
		}
		f.SetInt(int64(v))
	case f.Kind() == reflect.Slice:
		v, err := d.stringList(key, n)
		if err != nil {
			return err
		}
		f.Set(reflect.ValueOf(v))
	case f.Kind() == reflect.Map:
		v, err := d.stringMap(key, n)
		if err != nil {
			return err
		}
		f.Set(reflect.ValueOf(v))
	case f.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return d.errorf(n, "%s: expected a mapping, got %s", key, kindName(n))
		}
		return d.mapping(c, f, n, key+".")
	default:
		panic("config: no decoder for field type " + f.Type().String())
	}
	return nil
}

// show quotes a value for an error message, unless the key holds a secret.
func show(key, value string) string {
	if isSecretKey(key) {
		return "(value hidden)"
	}
	return strconv.Quote(value)
}

func (d *decoder) scalar(key string, n *yaml.Node, want string) (*yaml.Node, error) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode {
		return nil, d.errorf(n, "%s: expected %s, got %s", key, want, kindName(n))
	}
	return n, nil
}

func (d *decoder) string(key string, n *yaml.Node) (string, error) {
	n, err := d.scalar(key, n, "a string")
	if err != nil {
		return "", err
	}
	if isNull(n) {
		return "", nil
	}
	if n.ShortTag() == "!!binary" { // its text is base64, not the value
		return "", d.errorf(n, "%s: expected a string, got binary data", key)
	}
	// Like yaml.v2, which LBT used, take a number or a boolean written
	// where a string is expected (password: 12345) as the text written.
	return n.Value, nil
}

// yaml11Bools are the booleans of YAML 1.1, which LBT's yaml.v2 accepted and
// yaml.v3 reads as strings.
var yaml11Bools = map[string]bool{
	"y": true, "Y": true, "yes": true, "Yes": true, "YES": true,
	"on": true, "On": true, "ON": true,
	"n": false, "N": false, "no": false, "No": false, "NO": false,
	"off": false, "Off": false, "OFF": false,
}

func (d *decoder) bool(key string, n *yaml.Node) (bool, error) {
	n, err := d.scalar(key, n, "true or false")
	if err != nil {
		return false, err
	}
	if n.ShortTag() == "!!bool" {
		var b bool
		if err := n.Decode(&b); err == nil {
			return b, nil
		}
	}
	if b, ok := yaml11Bools[n.Value]; ok && n.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle) == 0 {
		return b, nil
	}
	return false, d.errorf(n, "%s: expected true or false, got %s", key, show(key, n.Value))
}

func (d *decoder) int(key string, n *yaml.Node) (int, error) {
	n, err := d.scalar(key, n, "an integer")
	if err != nil {
		return 0, err
	}
	if n.ShortTag() != "!!int" {
		return 0, d.errorf(n, "%s: expected an integer, got %s", key, show(key, n.Value))
	}
	var v int
	if err := n.Decode(&v); err != nil {
		return 0, d.errorf(n, "%s: %s is out of range", key, show(key, n.Value))
	}
	return v, nil
}

func (d *decoder) duration(key string, n *yaml.Node) (time.Duration, error) {
	n, err := d.scalar(key, n, "a duration")
	if err != nil {
		return 0, err
	}
	if n.ShortTag() == "!!int" {
		// A bare 0 needs no unit; any other number is ambiguous.
		if v, err := strconv.ParseInt(n.Value, 0, 64); err == nil && v == 0 {
			return 0, nil
		}
		return 0, d.errorf(n, "%s: duration %s needs a unit, like 90s, 10m, 24h or 7d", key, show(key, n.Value))
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return 0, d.errorf(n, "%s: invalid duration %s (use units s, m, h or d, like 10m, 24h or 7d)", key, show(key, n.Value))
	}
	return v, nil
}

func (d *decoder) stringList(key string, n *yaml.Node) ([]string, error) {
	n = resolve(n)
	if n.Kind != yaml.SequenceNode {
		return nil, d.errorf(n, "%s: expected a list, got %s", key, kindName(n))
	}
	var out []string
	for _, item := range n.Content {
		s, err := d.string(key, item)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (d *decoder) stringMap(key string, n *yaml.Node) (map[string]string, error) {
	if n.Kind != yaml.MappingNode {
		return nil, d.errorf(n, "%s: expected a mapping, got %s", key, kindName(n))
	}
	out := make(map[string]string)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, err := d.string(key, n.Content[i])
		if err != nil {
			return nil, err
		}
		name := key + "." + k
		if _, dup := out[k]; dup {
			return nil, d.errorf(n.Content[i], "duplicate key %q", name)
		}
		v, err := d.string(name, n.Content[i+1])
		if err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, nil
}

// resolve follows YAML aliases (*anchor) to the node they refer to.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a scalar"
	default:
		return "nothing"
	}
}

// structFields maps the yaml tag of every exported field of the struct v to
// the field.
func structFields(v reflect.Value) map[string]reflect.Value {
	fields := make(map[string]reflect.Value)
	for tag, f := range yamlFields(v) {
		fields[tag] = f
	}
	return fields
}

// yamlFields yields the yaml tag and the value of every exported field of
// the struct v that has a tag, in declaration order.
func yamlFields(v reflect.Value) iter.Seq2[string, reflect.Value] {
	return func(yield func(string, reflect.Value) bool) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			if !sf.IsExported() {
				continue
			}
			tag, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
			if tag == "" || tag == "-" {
				continue
			}
			if !yield(tag, v.Field(i)) {
				return
			}
		}
	}
}
