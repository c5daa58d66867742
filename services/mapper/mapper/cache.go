package mapper

import (
	"container/list"
	"sync"
)

// linkCache holds the links this process last read or stored, decoded, with their KV revision, so a
// decision reads no link from the bucket and decodes none: most of a decision's CPU was the link's read
// and decode. The compare-and-set on the revision stays the guard: a cached link another replica (or
// the other consumer loop) has since changed fails its store, the entry is dropped and the decision
// made again on the link read afresh. A stale entry costs a retry, never a wrong write.
//
// Least recently used first out of a memory budget (the encoded size, twice over for the decoded
// values); entity ids' indexes, which never change once made, are kept beside it.
type linkCache struct {
	mu      sync.Mutex
	budget  int
	used    int
	order   *list.List // of *cached, most recently used first
	byID    map[string]*list.Element
	indexes map[string]string // index key → link id
}

type cached struct {
	id   string
	st   *stored
	size int
}

// indexKeep bounds the remembered indexes (some 100 bytes each); past it the memory starts again.
const indexKeep = 1 << 16

func newLinkCache(budget int) *linkCache {
	return &linkCache{budget: budget, order: list.New(), byID: map[string]*list.Element{}, indexes: map[string]string{}}
}

// get returns the link as last read or stored, nil when not held. The record is shared: read it, never
// change it (the decision core works on copies).
func (c *linkCache) get(id string) *stored {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byID[id]
	if !ok {
		return nil
	}
	c.order.MoveToFront(el)
	return el.Value.(*cached).st
}

// put holds st, whose encoding is encoded bytes long, as the link at its revision.
func (c *linkCache) put(st *stored, encoded int) {
	if c == nil || st.rev == 0 {
		return
	}
	size := 2*encoded + 256
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byID[st.ID]; ok {
		old := el.Value.(*cached)
		if old.st.rev > st.rev {
			return // a newer revision is held already (the other consumer loop stored it)
		}
		c.used += size - old.size
		old.st, old.size = st, size
		c.order.MoveToFront(el)
	} else {
		if size > c.budget {
			return
		}
		c.byID[st.ID] = c.order.PushFront(&cached{id: st.ID, st: st, size: size})
		c.used += size
	}
	for c.used > c.budget {
		last := c.order.Back()
		e := last.Value.(*cached)
		c.order.Remove(last)
		delete(c.byID, e.id)
		c.used -= e.size
	}
}

// drop forgets a link: its store failed, so what is held may not be what the bucket holds.
func (c *linkCache) drop(id string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byID[id]; ok {
		c.used -= el.Value.(*cached).size
		c.order.Remove(el)
		delete(c.byID, id)
	}
}

// index returns the link id an index key names, "" when not known here.
func (c *linkCache) index(key string) string {
	if c == nil {
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.indexes[key]
}

func (c *linkCache) putIndex(key, linkID string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.indexes) >= indexKeep {
		c.indexes = map[string]string{}
	}
	c.indexes[key] = linkID
}
