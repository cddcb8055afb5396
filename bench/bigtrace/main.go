// Command bigtrace writes a large, valid trace document, to measure what reading one costs
// (scripts/show-rss.sh): a recorded trace's packets repeated, renumbered and shifted in time
// after each other until the document reaches -size bytes, with the flows they make. It
// writes as a live run does, one packet at a time, in the memory of the recorded trace.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pathtrace/pathtrace/analysis/assemble"
	"github.com/pathtrace/pathtrace/analysis/diagnose"
	"github.com/pathtrace/pathtrace/render/jsontrace"
	"github.com/pathtrace/pathtrace/trace"
)

func main() {
	from := flag.String("from", "testdata/merge/tcp/node1.json", "the recorded trace whose packets are repeated")
	out := flag.String("o", "big.json", "where to write the document")
	size := flag.Int64("size", 1<<30, "about how many bytes to write")
	rounds := flag.Int("rounds", 0, "repeat the packets this many times (instead of -size)")
	span := flag.Duration("span", 0, "time between rounds (default: the recorded trace's span); give the traces of one flow on two nodes the same -span and -rounds to merge them")
	flag.Parse()
	if err := run(*from, *out, *size, *rounds, *span); err != nil {
		fmt.Fprintln(os.Stderr, "bigtrace: "+err.Error())
		os.Exit(1)
	}
}

// repeat is the recorded packets, round after round.
type repeat struct {
	src    []trace.Packet
	span   uint64 // ns between the start of a round and the next
	rounds int
}

// each calls f with every packet of every round, in order. A round's packets are renumbered
// after the round before, and the fields that tell one packet on the wire from another (IP ID,
// TCP sequence, ICMP sequence) moved on by the round, so that the same rounds of the traces of
// one flow on two nodes still merge.
func (rp repeat) each(f func(*trace.Packet) error) error {
	for r := range rp.rounds {
		shift := r * len(rp.src)
		for _, p := range rp.src {
			p.ID += shift
			if p.CopyOf != 0 {
				p.CopyOf += shift
			}
			if p.RetransmitOf != 0 {
				p.RetransmitOf += shift
			}
			p.Tuple = moved(p.Tuple, r)
			hops := make([]trace.Hop, len(p.Hops))
			for i, h := range p.Hops {
				h.TimeNS += uint64(r) * rp.span
				if h.Tuple != nil {
					t := moved(*h.Tuple, r)
					h.Tuple = &t
				}
				hops[i] = h
			}
			p.Hops = hops
			if err := f(&p); err != nil {
				return err
			}
		}
	}
	return nil
}

func moved(h trace.Headers, round int) trace.Headers {
	h.IPID += uint16(round)
	h.ICMPSeq += uint16(round)
	if h.TCPSeq != 0 {
		h.TCPSeq += uint32(round) << 16
	}
	return h
}

func run(from, out string, size int64, rounds int, span time.Duration) error {
	src, err := jsontrace.ReadFile(from)
	if err != nil {
		return err
	}
	if len(src.Packets) == 0 {
		return fmt.Errorf("%s has no packets to repeat", from)
	}
	rp := repeat{src: src.Packets, rounds: 1}
	var round countWriter
	pw := jsontrace.NewPacketWriter(&round)
	if err := rp.each(pw.Write); err != nil {
		return err
	}
	for _, p := range src.Packets {
		for _, h := range p.Hops {
			rp.span = max(rp.span, h.TimeNS+1000)
		}
	}
	if span > 0 {
		rp.span = uint64(span)
	}
	rp.rounds = int(max(1, size/round.n))
	if rounds > 0 {
		rp.rounds = rounds
	}

	// The document's fields are written before the packets: count the flows and diagnose
	// first.
	sum := assemble.NewSummarizer(src.Filter)
	diag := diagnose.New(nil)
	rp.each(func(p *trace.Packet) error {
		sum.Add(*p)
		diag.Observe(*p)
		return nil
	})
	doc := *src
	doc.Packets, doc.Flows = nil, sum.Flows()
	doc.Verdict = diag.Verdict(&doc)
	doc.Meta.EndedAt = doc.Meta.StartedAt.Add(time.Duration(uint64(rp.rounds) * rp.span))

	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	pr, pwr := io.Pipe()
	go func() {
		bw := bufio.NewWriterSize(pwr, 64<<10)
		w := jsontrace.NewPacketWriter(bw)
		err := rp.each(w.Write)
		if err == nil {
			err = bw.Flush()
		}
		pwr.CloseWithError(err)
	}()
	if err := jsontrace.WriteStreamed(f, &doc, pr, rp.rounds*len(rp.src)); err != nil {
		return err
	}
	return f.Close()
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(b []byte) (int, error) { c.n += int64(len(b)); return len(b), nil }
