// Package geoiptest writes MaxMind-format databases for tests
// (mmdbwriter), so that no test depends on a downloaded database.
package geoiptest

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// Network is one entry of a generated database.
type Network struct {
	Prefix string
	Rec    mmdbtype.Map
}

// Spec describes a database.
type Spec struct {
	DBType    string // database_type: GeoLite2-Country, GeoLite2-ASN, GeoIP2-City
	IPVersion int    // 4 or 6 (default)
	Epoch     int64
	// ReservedToo inserts into private and reserved space, which real
	// files never hold.
	ReservedToo bool
	Nets        []Network
}

// Write writes spec as a MaxMind DB at path, atomically (a temp file
// renamed over it), as geoipupdate does.
func Write(tb testing.TB, path string, spec Spec) {
	tb.Helper()
	w, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            spec.DBType,
		IPVersion:               spec.IPVersion,
		BuildEpoch:              spec.Epoch,
		IncludeReservedNetworks: spec.ReservedToo,
		Languages:               []string{"en"},
		Description:             map[string]string{"en": "flowlens test database"},
	})
	if err != nil {
		tb.Fatal(err)
	}
	for _, n := range spec.Nets {
		_, ipnet, err := net.ParseCIDR(n.Prefix)
		if err != nil {
			tb.Fatal(err)
		}
		if err := w.Insert(ipnet, n.Rec); err != nil {
			tb.Fatalf("insert %s: %v", n.Prefix, err)
		}
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	f, err := os.Create(tmp)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := w.WriteTo(f); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
}

// Country is a GeoLite2-Country record of iso.
func Country(iso string) mmdbtype.Map {
	return mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String(iso), "geoname_id": mmdbtype.Uint32(1),
		"names": mmdbtype.Map{"en": mmdbtype.String("Country " + iso)}}}
}

// AS is a GeoLite2-ASN record.
func AS(n uint32, org string) mmdbtype.Map {
	return mmdbtype.Map{
		"autonomous_system_number":       mmdbtype.Uint32(n),
		"autonomous_system_organization": mmdbtype.String(org),
	}
}
