package scenario

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// The generated captures decode cleanly with gopacket, every frame.
func TestCapturesDecode(t *testing.T) {
	for name, c := range map[string]*Capture{"normal": Normal(time.Unix(1_700_000_000, 0)), "attacks": Attacks(time.Unix(1_700_000_000, 0))} {
		data, err := c.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), name+".pcap")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		f, _ := os.Open(path)
		r, err := pcapgo.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for {
			d, _, err := r.ReadPacketData()
			if err != nil {
				break
			}
			p := gopacket.NewPacket(d, layers.LayerTypeEthernet, gopacket.Default)
			if el := p.ErrorLayer(); el != nil {
				t.Fatalf("%s frame %d: %v", name, n, el.Error())
			}
			n++
		}
		f.Close()
		if n < 100 {
			t.Errorf("%s: %d frames", name, n)
		}
	}
}
