package detect

import (
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// edgeKey is one edge of the service map. It holds the server port, not
// the label: the labels of one service vary from flow to flow ("TLS",
// "TLS.Google") while its port does not.
type edgeKey struct {
	pool   string // the client's pool
	server netip.Addr
	proto  uint8 // IP protocol
	port   uint16
}

type edgeShard struct {
	mu sync.RWMutex
	m  map[edgeKey]struct{}
	_  [64]byte
}

// learner is the learned service map, sharded by server address.
type learner struct {
	pools    map[string]struct{} // nil: every client
	sev      Severity
	perShard int
	mask     uint64
	shards   []edgeShard
}

func newLearner(cfg Learn, shards int) *learner {
	l := &learner{pools: set(cfg.Pools), sev: cfg.Severity.or(SeverityLow), mask: uint64(shards - 1),
		shards: make([]edgeShard, shards), perShard: (cfg.MaxEdges + shards - 1) / shards}
	for i := range l.shards {
		l.shards[i].m = map[edgeKey]struct{}{}
	}
	return l
}

func (l *learner) size() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

// learnEval records the flow's edge while learning; afterwards it alerts
// on an edge never seen, and learns it.
func (d *Detector) learnEval(v *view, now time.Time) {
	l := d.learn
	if l.pools != nil {
		if _, ok := l.pools[v.clientPool]; !ok {
			return
		}
	}
	k := edgeKey{pool: v.clientPool, server: v.server, proto: v.flow.IPProtocol, port: v.serverPort}
	s := &l.shards[addrHash(v.server)&l.mask]
	s.mu.RLock()
	_, known := s.m[k]
	s.mu.RUnlock()
	if known {
		return
	}
	until := d.learnUntil.Load()
	learning := until == 0 || now.UnixNano() < until
	s.mu.Lock()
	_, known = s.m[k] // another worker may have stored it meanwhile
	if !known {
		if len(s.m) < l.perShard {
			k.pool = strings.Clone(k.pool)
			s.m[k] = struct{}{}
		} else {
			d.m.edgesFull.Add(1)
		}
	}
	s.mu.Unlock()
	if known || learning {
		return
	}
	a := d.newAlert(v, RuleNewEdge, l.sev)
	d.raise(&a, kNewEdge, now, func() string {
		return "new edge " + poolText(v.clientPool) + " → " + hostPort(v.server, v.serverPort) + "/" +
			ipProtoName(v.flow.IPProtocol) + " (" + v.label + ", first seen from " + v.client.Unmap().String() + ")"
	})
}

func ipProtoName(p uint8) string {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 1:
		return "icmp"
	case 58:
		return "icmpv6"
	case 132:
		return "sctp"
	}
	return "ip" + strconv.Itoa(int(p))
}

// set returns l as a set, nil when l is empty.
func set[T comparable](l []T) map[T]struct{} {
	if len(l) == 0 {
		return nil
	}
	m := make(map[T]struct{}, len(l))
	for _, s := range l {
		m[s] = struct{}{}
	}
	return m
}
