package capture

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/net/bpf"
)

// maxFilterLen is the kernel's BPF_MAXINSNS.
const maxFilterLen = 4096

// ParseFilter reads a classic BPF program as tcpdump prints it compiled:
// `tcpdump -ddd` (the instruction count, then "code jt jf k" per line, in
// decimal, lines also separated by commas as iptables' bpf match takes
// it) or `tcpdump -dd` (C initialisers "{ 0x28, 0, 0, 0x0000000c },").
// The kernel checks the program itself when it is attached.
func ParseFilter(text string) ([]bpf.RawInstruction, error) {
	braces := strings.Contains(text, "{")
	lines := strings.FieldsFunc(text, func(r rune) bool { return r == '\n' || r == ';' || !braces && r == ',' })
	var prog []bpf.RawInstruction
	count := -1
	for n, line := range lines {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		var fields []string
		if strings.HasPrefix(line, "{") {
			line = strings.TrimSuffix(strings.TrimSuffix(line, ","), "}")
			line = strings.TrimPrefix(line, "{")
			fields = strings.Split(line, ",")
		} else {
			fields = strings.Fields(line)
			if len(fields) == 1 && count < 0 && len(prog) == 0 {
				c, err := strconv.Atoi(fields[0])
				if err != nil {
					return nil, fmt.Errorf("line %d: instruction count %q: %w", n+1, fields[0], err)
				}
				count = c
				continue
			}
		}
		if len(fields) != 4 {
			return nil, fmt.Errorf("line %d: want code, jt, jf, k; got %q", n+1, line)
		}
		var v [4]uint64
		for i, f := range fields {
			x, err := strconv.ParseUint(strings.TrimSpace(f), 0, 32)
			if err != nil {
				return nil, fmt.Errorf("line %d: %q: %w", n+1, f, err)
			}
			v[i] = x
		}
		if v[0] > 0xffff || v[1] > 0xff || v[2] > 0xff {
			return nil, fmt.Errorf("line %d: field out of range: %q", n+1, line)
		}
		prog = append(prog, bpf.RawInstruction{Op: uint16(v[0]), Jt: uint8(v[1]), Jf: uint8(v[2]), K: uint32(v[3])})
	}
	switch {
	case len(prog) == 0:
		return nil, errors.New("empty BPF program")
	case len(prog) > maxFilterLen:
		return nil, fmt.Errorf("BPF program of %d instructions, the kernel takes %d", len(prog), maxFilterLen)
	case count >= 0 && count != len(prog):
		return nil, fmt.Errorf("BPF program announces %d instructions, has %d", count, len(prog))
	}
	return prog, nil
}
