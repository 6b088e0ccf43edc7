package detect

import (
	"time"

	"flowlens/enrich/policy"
)

// ruleIndex sorts the rules by the clients their From selector can name,
// so that a flow from a pool no rule names costs one map lookup. It only
// narrows the candidates: policy.Rule.Matches decides. The lists are
// disjoint for any one flow, so that a rule is evaluated once: a rule
// with Any is only in any, one with Internal only in internal (its pools
// are internal anyway), the others in byFrom under each pool and in
// external when they select it (a client in a pool is not external).
type ruleIndex struct {
	byFrom   poolMap[[]*policy.Rule]
	any      []*policy.Rule
	external []*policy.Rule
	internal []*policy.Rule
}

// newRuleIndex indexes the rules whose alerts are at least minSev; rules
// is the detector's own copy, which it points into.
func newRuleIndex(rules []policy.Rule, minSev Severity) *ruleIndex {
	x := &ruleIndex{}
	byFrom := map[string][]*policy.Rule{}
	for i := range rules {
		r := &rules[i]
		if severityOf(r.Severity) < minSev {
			continue
		}
		switch {
		case r.From.Any:
			x.any = append(x.any, r)
		case r.From.Internal:
			x.internal = append(x.internal, r)
		default:
			for _, p := range r.From.Pools {
				if l := byFrom[p]; len(l) == 0 || l[len(l)-1] != r {
					byFrom[p] = append(l, r)
				}
			}
			if r.From.External {
				x.external = append(x.external, r)
			}
		}
	}
	x.byFrom = newPoolMap(byFrom)
	return x
}

func (x *ruleIndex) eval(d *Detector, v *view, now time.Time) {
	if x.byFrom.len() > 0 && v.clientPool != "" {
		if rules, ok := x.byFrom.get(v.clientPool); ok {
			x.evalList(d, rules, v, now)
		}
	}
	if len(x.any) > 0 {
		x.evalList(d, x.any, v, now)
	}
	if len(x.external) > 0 || len(x.internal) > 0 {
		if v.clientPool == "" && !policy.IsPrivate(v.client) {
			x.evalList(d, x.external, v, now)
		} else {
			x.evalList(d, x.internal, v, now)
		}
	}
}

func (x *ruleIndex) evalList(d *Detector, rules []*policy.Rule, v *view, now time.Time) {
	for _, r := range rules {
		if r.Matches(v.clientPool, v.client, v.serverPool, v.server, v.label, v.category) {
			a := d.newAlert(v, r.Name, severityOf(r.Severity))
			d.raise(&a, kPolicy, now, func() string { return policyEvidence(r, v) })
		}
	}
}

func policyEvidence(r *policy.Rule, v *view) string {
	cat := v.category
	if cat == "" {
		cat = "no category"
	}
	return v.label + " (" + cat + ") from " + v.client.Unmap().String() + " (" + poolText(v.clientPool) + ") to " +
		hostPort(v.server, v.serverPort) + " (" + poolText(v.serverPool) + "), rule " + r.Name
}
