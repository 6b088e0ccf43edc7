package geoip

import "flowlens/schema"

// Enrich fills the country and AS name of both ends of f, and SrcAS/DstAS
// when the exporter sent none. An exporter's AS is kept, since it comes
// from the router's own BGP view; the AS name is then set only when the
// database agrees on the number, so that a name never labels another AS.
func (d *DB) Enrich(f *schema.Flow) { enrichFrom(f, d.Lookup(f.SrcAddr), d.Lookup(f.DstAddr)) }

// enrichFrom fills f from the answers for its two ends.
func enrichFrom(f *schema.Flow, src, dst Info) {
	f.SrcCountry, f.DstCountry = src.Country, dst.Country
	f.SrcAS, f.SrcASName = fillAS(f.SrcAS, src)
	f.DstAS, f.DstASName = fillAS(f.DstAS, dst)
}

func fillAS(as uint32, info Info) (uint32, string) {
	if as == 0 {
		return info.ASN, info.ASName
	}
	if as == info.ASN {
		return as, info.ASName
	}
	return as, ""
}
