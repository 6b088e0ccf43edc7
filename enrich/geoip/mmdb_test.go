package geoip

import (
	"os"
	"testing"

	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// replaceFile puts data at path atomically.
func replaceFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// country is a GeoLite2-Country record; "" leaves a part out.
func country(iso, registered string) mmdbtype.Map {
	m := mmdbtype.Map{
		"continent": mmdbtype.Map{"code": mmdbtype.String("EU"), "geoname_id": mmdbtype.Uint32(6255148),
			"names": mmdbtype.Map{"en": mmdbtype.String("Europe")}},
	}
	if iso != "" {
		m["country"] = mmdbtype.Map{"iso_code": mmdbtype.String(iso), "geoname_id": mmdbtype.Uint32(1),
			"names": mmdbtype.Map{"en": mmdbtype.String("Country " + iso)}}
	}
	if registered != "" {
		m["registered_country"] = mmdbtype.Map{"iso_code": mmdbtype.String(registered), "geoname_id": mmdbtype.Uint32(2),
			"names": mmdbtype.Map{"en": mmdbtype.String("Country " + registered)}}
	}
	return m
}

// city is a GeoIP2-City record, the fields a country lookup must skip
// included.
func city(iso, name string) mmdbtype.Map {
	m := country(iso, iso)
	m["city"] = mmdbtype.Map{"geoname_id": mmdbtype.Uint32(2158177),
		"names": mmdbtype.Map{"en": mmdbtype.String(name), "de": mmdbtype.String(name)}}
	m["location"] = mmdbtype.Map{"accuracy_radius": mmdbtype.Uint16(100), "latitude": mmdbtype.Float64(-37.8),
		"longitude": mmdbtype.Float64(144.9), "time_zone": mmdbtype.String("Australia/Melbourne")}
	m["subdivisions"] = mmdbtype.Slice{mmdbtype.Map{"iso_code": mmdbtype.String("VIC")}}
	m["postal"] = mmdbtype.Map{"code": mmdbtype.String("3000")}
	return m
}

// as is a GeoLite2-ASN record.
func as(n uint32, org string) mmdbtype.Map {
	return mmdbtype.Map{
		"autonomous_system_number":       mmdbtype.Uint32(n),
		"autonomous_system_organization": mmdbtype.String(org),
	}
}
