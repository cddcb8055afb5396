package main

// The postmortem artifacts, the same flags on the live run, show, merge and demo.
const (
	pcapngFlag  = "pcapng"
	pcapngUsage = "write the packets' headers, as the kernel held them at each hop, to this pcapng file (Wireshark, tshark), each hop's story in its comment"
	svgFlag     = "svg"
	svgUsage    = "draw the journey to this SVG file: namespaces, devices, the request's and the reply's paths, NAT and the drop"
)
