package main

import (
	"cmp"
	"slices"
	"time"

	"flowlens/decoder"
)

// exporterView is one row of /api/v1/exporters: an exporter's health.
type exporterView struct {
	Address   string    `json:"address"`
	LastSeen  time.Time `json:"last_seen"`
	Datagrams uint64    `json:"datagrams"`
	Flows     uint64    `json:"flows"`
	Errors    uint64    `json:"errors"`
	// Drops is what of the exporter's export was lost in decoding, by
	// reason (decoder.ExporterInfo.Drops).
	Drops              map[string]uint64 `json:"drops"`
	WaitingForTemplate uint64            `json:"waiting_for_template"`
	Templates          int               `json:"templates"`
	Sampling           []samplingView    `json:"sampling"`
	ClockSkewSeconds   *int64            `json:"clock_skew_seconds"`
	SourcePorts        []uint16          `json:"source_ports"`
}

type samplingView struct {
	Rate   uint32 `json:"rate"`
	Source string `json:"source"`
}

type templateView struct {
	Exporter            string `json:"exporter"`
	SourcePort          uint16 `json:"source_port"`
	Version             uint16 `json:"version"`
	ObservationDomainID uint32 `json:"observation_domain_id"`
	ID                  uint16 `json:"template_id"`
	Fields              int    `json:"fields"`
	Options             bool   `json:"options"`
}

// exportersView merges what the workers know of each exporter (an exporter
// is decoded by one worker, but state restored at start sits in all).
func exportersView(infos []decoder.ExporterInfo) []exporterView {
	byAddr := map[string]*exporterView{}
	for _, e := range infos {
		a := e.Addr.String()
		v := byAddr[a]
		if v == nil {
			v = &exporterView{Address: a}
			byAddr[a] = v
		}
		if e.LastSeen.After(v.LastSeen) {
			v.LastSeen = e.LastSeen
			if e.HaveClockSkew {
				skew := e.ClockSkew
				v.ClockSkewSeconds = &skew
			}
		}
		v.Datagrams += e.Datagrams
		v.Flows += e.Flows
		v.Errors += e.Errors
		v.WaitingForTemplate += e.WaitingForTemplate
		for r, n := range e.Drops {
			if v.Drops == nil {
				v.Drops = map[string]uint64{}
			}
			v.Drops[r] += n
		}
		v.Templates = max(v.Templates, len(e.Templates))
		for _, s := range e.Sampling {
			sv := samplingView{s.Rate, s.Source.String()}
			if !slices.Contains(v.Sampling, sv) {
				v.Sampling = append(v.Sampling, sv)
			}
		}
		for _, p := range e.SourcePorts {
			if !slices.Contains(v.SourcePorts, p) {
				v.SourcePorts = append(v.SourcePorts, p)
			}
		}
	}
	out := make([]exporterView, 0, len(byAddr))
	for _, v := range byAddr {
		out = append(out, *v)
	}
	slices.SortFunc(out, func(a, b exporterView) int { return cmp.Compare(a.Address, b.Address) })
	return out
}

func templatesView(infos []decoder.ExporterInfo) []templateView {
	seen := map[templateView]bool{}
	var out []templateView
	for _, e := range infos {
		for _, t := range e.Templates {
			v := templateView{e.Addr.String(), t.SourcePort, t.Version, t.ObservationDomainID, t.ID, t.Fields, t.Options}
			if !seen[v] {
				seen[v] = true
				out = append(out, v)
			}
		}
	}
	slices.SortFunc(out, func(a, b templateView) int {
		return cmp.Or(cmp.Compare(a.Exporter, b.Exporter), cmp.Compare(a.Version, b.Version),
			cmp.Compare(a.ObservationDomainID, b.ObservationDomainID), cmp.Compare(a.ID, b.ID), cmp.Compare(a.SourcePort, b.SourcePort))
	})
	return out
}
