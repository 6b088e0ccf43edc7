package detect

import (
	"slices"

	"flowlens/enrich/policy"
)

// FromPolicy returns the detection config of a policy file: DefaultConfig
// with the file's rules, service map learning, DNS checks, SaaS lists,
// dedup window and minimum severity. The parser has filled in the
// defaults of the sections the file leaves out, so an empty policy gives
// the policy file's defaults (its DNS thresholds are DefaultConfig's), and
// nil gives DefaultConfig. The detect-only tunnel parameters (MaxKeys,
// MeanLabelLen, PacketsPerFlow, MinSignals, the query types and the
// ignore lists) and the state bounds keep their defaults.
//
// The rules and SaaS lists are shared with p, which must not be modified
// afterwards (policy.Policy is read-only once parsed).
func FromPolicy(p *policy.Policy) Config {
	c := DefaultConfig()
	if p == nil {
		return c
	}
	c.Rules = slices.Clone(p.Rules)
	c.Learn = Learn{
		Enabled:  p.Learn.Enabled,
		Period:   p.Learn.Period,
		Pools:    slices.Clone(p.Learn.Pools),
		MaxEdges: p.Learn.MaxEdges,
		Severity: severityOf(p.Learn.Severity),
	}
	d := &p.DNS
	c.DNS.AllowedResolvers = slices.Clone(d.AllowedResolvers)
	// The file has one dns severity, for both DNS detections.
	c.DNS.ResolverSeverity = severityOf(d.Severity)
	t := &c.DNS.Tunnel
	t.Window = d.Window
	t.UniqueSubdomains = d.UniqueSubdomains
	t.QueryBytes = d.QueryBytes
	t.MaxLabelLen = d.LabelLength
	t.Entropy = d.Entropy
	t.TunnelQTypeRatio = d.TXTNullShare
	t.NXDomainRatio = d.NXDomainRatio
	t.MinQueries = d.MinQueries
	t.Severity = severityOf(d.Severity)
	c.SaaS = p.SaaS
	c.DedupWindow = p.Alerts.DedupWindow
	c.MinSeverity = severityOf(p.Alerts.MinSeverity)
	return c
}

// severityOf maps a policy file's severity onto an alert's: the same five
// levels in the same order, ours counted from 1 so that 0 can mean "not
// set" in a Config. It is the only place where the two meet.
func severityOf(s policy.Severity) Severity { return Severity(s) + 1 }
