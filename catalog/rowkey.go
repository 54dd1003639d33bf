package catalog

// Row keys are indexed by a hash so that the history of one row is found
// without scanning the archive. The hash is FNV-1a (64 bit) over the key
// columns' values encoded as in a tuple (AppendValue), in key-column order,
// shifted right by 17 bits: 47 bits keep SQLite's integer at 6 bytes, and a
// collision only costs reading a blob that is then filtered by value.

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// KeyHasher accumulates a row-key hash.
type KeyHasher uint64

// NewKeyHasher starts a hash.
func NewKeyHasher() KeyHasher { return fnvOffset }

// Write adds encoded value bytes to the hash.
func (h *KeyHasher) Write(b []byte) {
	x := uint64(*h)
	for _, c := range b {
		x ^= uint64(c)
		x *= fnvPrime
	}
	*h = KeyHasher(x)
}

// Sum is the value stored in row_key.key_hash.
func (h KeyHasher) Sum() int64 { return int64(uint64(h) >> 17) }

// KeyHash hashes key values given as text, as `lbt inspect --key` does.
func KeyHash(values [][]byte) int64 {
	h := NewKeyHasher()
	var buf []byte
	for _, v := range values {
		buf = AppendValue(buf[:0], ValueText, v)
		h.Write(buf)
	}
	return h.Sum()
}
