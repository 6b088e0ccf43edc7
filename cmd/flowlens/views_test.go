package main

import (
	"fmt"
	"net/netip"
	"testing"

	"flowlens/decoder"
)

// An exporter decoded by two workers (state restored at start sits in
// every worker) is one row, its drops summed by reason.
func TestExportersViewMergesDrops(t *testing.T) {
	a := netip.MustParseAddr("192.0.2.1")
	v := exportersView([]decoder.ExporterInfo{
		{Addr: a, Datagrams: 3, Errors: 1, Drops: map[string]uint64{"malformed": 1, "no_template_expired": 2}},
		{Addr: a, Datagrams: 2, Drops: map[string]uint64{"no_template_expired": 5}},
		{Addr: netip.MustParseAddr("192.0.2.2"), Datagrams: 7},
	})
	if len(v) != 2 || v[0].Datagrams != 5 || fmt.Sprint(v[0].Drops) != "map[malformed:1 no_template_expired:7]" || v[1].Drops != nil {
		t.Errorf("view %+v", v)
	}
}
