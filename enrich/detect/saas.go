package detect

import "time"

// saasPolicy is a compiled SaaSPolicy; the map values are the alert's Rule.
type saasPolicy struct {
	allow, allowCat map[string]struct{}
	deny, denyCat   map[string]string
	denyAllCat      bool
}

type saas struct {
	pools map[string]*saasPolicy
	def   *saasPolicy // PoolDefault, or nil
	sev   Severity
}

func newSaaS(cfg map[string]SaaSPolicy, sev Severity) *saas {
	if len(cfg) == 0 {
		return nil
	}
	s := &saas{pools: map[string]*saasPolicy{}, sev: sev}
	for pool, p := range cfg {
		c := &saasPolicy{allow: set(p.Allow), allowCat: set(p.AllowCategories),
			deny: map[string]string{}, denyCat: map[string]string{}}
		for _, n := range p.Deny {
			c.deny[n] = "deny:" + n
		}
		for _, n := range p.DenyCategories {
			if n == "*" {
				c.denyAllCat = true
				continue
			}
			c.denyCat[n] = "deny_category:" + n
		}
		if pool == PoolDefault {
			s.def = c
		} else {
			s.pools[pool] = c
		}
	}
	return s
}

func (p *saasPolicy) decide(label, app, cat string) (rule string, alert bool) {
	if r, ok := p.deny[app]; ok {
		return r, true
	}
	if r, ok := p.deny[label]; ok {
		return r, true
	}
	if _, ok := p.allow[app]; ok {
		return "", false
	}
	if _, ok := p.allow[label]; ok {
		return "", false
	}
	if cat == "" {
		return "", false
	}
	if _, ok := p.allowCat[cat]; ok {
		return "", false
	}
	if r, ok := p.denyCat[cat]; ok {
		return r, true
	}
	if p.denyAllCat {
		return "deny_category:*", true
	}
	return "", false
}

// eval applies the client pool's policy (PoolDefault for clients in no
// listed pool) to a flow to an external server.
func (s *saas) eval(d *Detector, v *view, now time.Time) {
	f := v.in.Flow
	if (v.label == "" || v.label == "Unknown") && f.AppCategory == "" {
		return
	}
	p := s.def
	if v.clientPool != "" {
		if q, ok := s.pools[v.clientPool]; ok {
			p = q
		}
	}
	if p == nil {
		return
	}
	rule, alert := p.decide(v.label, v.app, f.AppCategory)
	if !alert {
		return
	}
	a := d.newAlert(v, rule, s.sev)
	d.raise(&a, kSaaS, now, func() string {
		e := v.label + " (" + f.AppCategory + ") from " + v.client.Unmap().String() + " (" + poolText(v.clientPool) + ") to " +
			hostPort(v.server, v.serverPort)
		if f.ServerName != "" {
			e += " " + f.ServerName
		}
		return e + ": " + rule
	})
}
