package capture

import (
	"bytes"
	"os"
	"testing"

	"flowlens/internal/pcapfile"
)

// FuzzFileReader feeds arbitrary bytes to the capture reader: it must
// return packets or an error, never panic, and never allocate more than
// its limits allow whatever sizes the input claims. Seeds: the smaller
// corpus captures and hand-built pcap/pcapng files.
func FuzzFileReader(f *testing.F) {
	for _, path := range corpusFiles(f) {
		if raw, err := os.ReadFile(path); err == nil && len(raw) < 16<<10 {
			f.Add(raw)
		}
	}
	f.Add(pcapFile(276, 65535, sll2Frame()))
	f.Add(pcapngFile(276, 65535, sll2Frame(), sll2Frame()))
	f.Add(pcapngFile(1, 0, []byte{1, 2, 3}))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := NewFileReader(bytes.NewReader(in))
		if err != nil {
			return
		}
		for range 1000 {
			data, ci, err := r.Next()
			if err != nil {
				return
			}
			if len(data) != ci.CaptureLength || ci.Length < ci.CaptureLength || len(data) > pcapfile.MaxBlock {
				t.Fatalf("packet of %d bytes, capture length %d, length %d", len(data), ci.CaptureLength, ci.Length)
			}
		}
	})
}
