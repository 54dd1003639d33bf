package inspect

// ParseActor reads the content of an 'lbt.actor' message; an actor that
// is not Known when it is not one.
func ParseActor(content []byte) Actor { return parseActor(content) }

// FormatKey writes a row's key (values by column name) as --key takes it.
func FormatKey(key map[string]string) string { return rowKey(key).String() }
