package detect

import (
	"time"
)

type compiledRule struct {
	name       string
	sev        Severity
	to         string
	cats       map[string]struct{}
	protos     map[string]struct{}
	anyTraffic bool // no categories and no protocols: every flow matches
}

// policy indexes the rules by client pool, so that a flow from a pool no
// rule names costs one map lookup.
type policy struct {
	byFrom   map[string][]*compiledRule
	any      []*compiledRule // FromPool "any"
	external []*compiledRule // FromPool "external"
}

func newPolicy(rules []Rule) *policy {
	p := &policy{byFrom: map[string][]*compiledRule{}}
	for _, r := range rules {
		c := &compiledRule{name: r.Name, sev: r.Severity.or(SeverityMedium), to: r.ToPool,
			cats: set(r.Categories), protos: set(r.Protocols), anyTraffic: len(r.Categories) == 0 && len(r.Protocols) == 0}
		switch r.FromPool {
		case PoolAny:
			p.any = append(p.any, c)
		case PoolExternal:
			p.external = append(p.external, c)
		default:
			p.byFrom[r.FromPool] = append(p.byFrom[r.FromPool], c)
		}
	}
	return p
}

func set(l []string) map[string]struct{} {
	if len(l) == 0 {
		return nil
	}
	m := make(map[string]struct{}, len(l))
	for _, s := range l {
		m[s] = struct{}{}
	}
	return m
}

func (p *policy) eval(d *Detector, v *view, now time.Time) {
	if len(p.byFrom) > 0 && v.clientPool != "" {
		p.evalList(d, p.byFrom[v.clientPool], v, now)
	}
	if len(p.any) > 0 {
		p.evalList(d, p.any, v, now)
	}
	if len(p.external) > 0 && v.clientPool == "" && isPublic(v.client) {
		p.evalList(d, p.external, v, now)
	}
}

func (p *policy) evalList(d *Detector, rules []*compiledRule, v *view, now time.Time) {
	for _, r := range rules {
		if r.matches(v) {
			a := d.newAlert(v, r.name, r.sev)
			d.raise(&a, kPolicy, now, func() string { return policyEvidence(r, v) })
		}
	}
}

func (r *compiledRule) matches(v *view) bool {
	switch r.to {
	case PoolAny:
	case PoolExternal:
		if !v.serverExternal {
			return false
		}
	default:
		if v.serverPool != r.to {
			return false
		}
	}
	if r.anyTraffic {
		return true
	}
	if r.cats != nil && v.in.Flow.AppCategory != "" {
		if _, ok := r.cats[v.in.Flow.AppCategory]; ok {
			return true
		}
	}
	if r.protos != nil && v.label != "" {
		if _, ok := r.protos[v.master]; ok {
			return true
		}
		if v.master != v.label {
			if _, ok := r.protos[v.label]; ok {
				return true
			}
		}
	}
	return false
}

func policyEvidence(r *compiledRule, v *view) string {
	cat := v.in.Flow.AppCategory
	if cat == "" {
		cat = "no category"
	}
	return v.label + " (" + cat + ") from " + v.client.Unmap().String() + " (" + poolText(v.clientPool) + ") to " +
		hostPort(v.server, v.serverPort) + " (" + poolText(v.serverPool) + "), rule " + r.name
}
