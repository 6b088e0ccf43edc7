package detect

import (
	"encoding/json"
	"net/netip"
	"time"
)

// alertJSON is the wire form of an Alert: snake_case, addresses unmapped.
type alertJSON struct {
	Time     time.Time `json:"time"`
	Last     time.Time `json:"last"`
	Kind     string    `json:"kind"`
	Rule     string    `json:"rule"`
	Severity Severity  `json:"severity"`
	SrcAddr  string    `json:"src_addr"`
	DstAddr  string    `json:"dst_addr"`
	SrcPool  string    `json:"src_pool,omitempty"`
	DstPool  string    `json:"dst_pool,omitempty"`
	Protocol string    `json:"protocol"`
	Evidence string    `json:"evidence"`
	Count    uint64    `json:"count"`
}

func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.Unmap().String()
}

// MarshalJSON writes the alert in snake_case with IPv4 addresses unmapped,
// as the webhook sends it.
func (a *Alert) MarshalJSON() ([]byte, error) {
	return json.Marshal(alertJSON{Time: a.Time, Last: a.Last, Kind: a.Kind, Rule: a.Rule, Severity: a.Severity,
		SrcAddr: addrText(a.SrcAddr), DstAddr: addrText(a.DstAddr), SrcPool: a.SrcPool, DstPool: a.DstPool,
		Protocol: a.Protocol, Evidence: a.Evidence, Count: a.Count})
}
