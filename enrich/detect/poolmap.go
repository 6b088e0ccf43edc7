package detect

// poolMap is a map by pool name that scans a short list instead of
// hashing when it holds few keys: a policy names few pools in its rules
// and saas lists, and the pool names flows carry are the policy's own
// strings, so a comparison mostly stops at the length or the pointer.
// Hashing the name cost a rule lookup more than the rest of its check.
type poolMap[V any] struct {
	keys []string
	vals []V
	m    map[string]V // more than smallPools keys
}

const smallPools = 8

func newPoolMap[V any](m map[string]V) poolMap[V] {
	if len(m) > smallPools {
		return poolMap[V]{m: m}
	}
	var p poolMap[V]
	for k, v := range m {
		p.keys, p.vals = append(p.keys, k), append(p.vals, v)
	}
	return p
}

func (p *poolMap[V]) get(k string) (V, bool) {
	if p.m != nil {
		v, ok := p.m[k]
		return v, ok
	}
	for i, key := range p.keys {
		if key == k {
			return p.vals[i], true
		}
	}
	var zero V
	return zero, false
}

func (p *poolMap[V]) len() int {
	if p.m != nil {
		return len(p.m)
	}
	return len(p.keys)
}
