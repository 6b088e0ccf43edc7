package detect

import (
	"time"

	"flowlens/enrich/policy"
)

// saasEval applies the client's SaaS list (Config.SaaS.For its pool) to a
// flow to an external server. A flow nDPI could not name is no
// application, so not SaaS: it is skipped even by deny: ["*"].
func (d *Detector) saasEval(v *view, now time.Time) {
	if (v.label == "" || v.label == "Unknown") && v.category == "" {
		return
	}
	// SaaS.For, without hashing the pool's name.
	l, list := d.cfg.SaaS.Default, policy.Default
	if v.clientPool != "" {
		if pl, ok := d.saasPools.get(v.clientPool); ok {
			l, list = pl, v.clientPool
		}
	}
	if l == nil || !l.Unsanctioned(v.label, v.category) {
		return
	}
	a := d.newAlert(v, list+": "+v.label, severityOf(l.Severity))
	d.raise(&a, kSaaS, now, func() string {
		e := v.label + " (" + v.category + ") from " + v.client.Unmap().String() + " (" + poolText(v.clientPool) + ") to " +
			hostPort(v.server, v.serverPort)
		if sni := v.flow.ServerName; sni != "" {
			e += " " + sni
		}
		return e + ": unsanctioned in the saas list " + list
	})
}
