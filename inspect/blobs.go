package inspect

import (
	"context"
	"sync"

	"lbt/catalog"
)

// blobCache keeps decompressed blobs within one Inspector, up to a byte
// budget, evicting the oldest first. A blob being read is read once,
// whoever asks for it meanwhile waits for that read.
type blobCache struct {
	mu        sync.Mutex
	max, size int
	order     []int64
	m         map[int64]*cachedBlob
}

type cachedBlob struct {
	done chan struct{} // closed when raw and err are set
	raw  []byte
	err  error
}

func newBlobCache(max int) *blobCache {
	return &blobCache{max: max, m: make(map[int64]*cachedBlob)}
}

// get returns blob id, calling load when no one has read it yet.
func (c *blobCache) get(id int64, load func() ([]byte, error)) ([]byte, error) {
	c.mu.Lock()
	e, ok := c.m[id]
	if !ok {
		e = &cachedBlob{done: make(chan struct{})}
		c.m[id] = e
		c.order = append(c.order, id)
	}
	c.mu.Unlock()
	if ok {
		<-e.done
		return e.raw, e.err
	}
	e.raw, e.err = load()
	close(e.done)
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.err != nil {
		delete(c.m, id) // let a later call try again
		return nil, e.err
	}
	c.size += len(e.raw)
	// Evict the oldest blobs read, keeping those still being read.
	kept := c.order[:0]
	for _, old := range c.order {
		o, ok := c.m[old]
		if !ok {
			continue
		}
		if c.size > c.max && o != e && isDone(o) {
			c.size -= len(o.raw)
			delete(c.m, old)
			continue
		}
		kept = append(kept, old)
	}
	c.order = kept
	return e.raw, nil
}

func (in *Inspector) readBlob(b catalog.Blob) ([]byte, error) {
	return in.blobs.get(b.ID, func() ([]byte, error) { return in.src.Read(b, nil) })
}

// background runs fn on another goroutine, at most cap(in.sem) at once;
// Close waits for it. When ctx ends before fn could start, cancelled runs
// instead.
func (in *Inspector) background(ctx context.Context, fn, cancelled func()) {
	in.prefetches.Add(1)
	go func() {
		defer in.prefetches.Done()
		select {
		case in.sem <- struct{}{}:
		case <-ctx.Done():
			cancelled()
			return
		}
		defer func() { <-in.sem }()
		fn()
	}()
}

func isDone(e *cachedBlob) bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}
