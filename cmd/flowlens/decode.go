package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"flowlens/collector/pcap"
	"flowlens/decoder"
	"flowlens/enrich"
	"flowlens/schema"
)

// decodeCmd decodes the export datagrams in captures (template state
// carried across the file, and across files in order) and prints one JSON
// object per flow, keys = column names: what the store would hold.
func decodeCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("decode", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stats := fs.Bool("stats", false, "print decoder counters to stderr at the end")
	noLabel := fs.Bool("raw", false, "do not guess application labels from ports")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: flowlens decode [--stats] [--raw] FILE.pcap|- ...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return flag.ErrHelp
	}
	out := bufio.NewWriterSize(stdout, 64<<10)
	defer out.Flush()
	dec := decoder.New(decoder.DefaultConfig())
	log := slog.New(slog.NewTextHandler(stderr, nil))
	var line []byte
	emit := func(f *schema.Flow) {
		if !*noLabel {
			enrich.Label(f)
		}
		line = schema.AppendJSON(line[:0], f)
		line = append(line, '\n')
		_, _ = out.Write(line)
	}
	for _, name := range fs.Args() {
		var r io.Reader = os.Stdin
		if name != "-" {
			f, err := os.Open(name)
			if err != nil {
				return err
			}
			defer f.Close()
			r = f
		}
		st, err := pcap.ReadUDP(bufio.NewReader(r), func(d pcap.Datagram) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := dec.Decode(d.Payload, d.Src, d.Timestamp, emit); err != nil {
				log.Warn("datagram not decoded", "file", name, "exporter", d.Src, "err", err)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if *stats {
			fmt.Fprintf(stderr, "%s: %+v\n", name, st)
		}
	}
	if *stats {
		fmt.Fprintf(stderr, "decoder: %+v\n", dec.Stats())
	}
	return nil
}
