package svg

import (
	"bytes"
	"context"
	"encoding/xml"
	"flag"
	"image"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/render/jsontrace"
)

var update = flag.Bool("update", false, "redraw docs/demo.svg and docs/demo.png (through chromium)")

// Real traces (testdata/postmortem: its README says how they were taken).
const testdata = "../../testdata/postmortem/"

func draw(t *testing.T, name string) []byte {
	t.Helper()
	tr, err := jsontrace.ReadFile(testdata + name + ".json")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := Write(&b, tr); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// The picture is well-formed XML and self-contained: no script, nothing fetched (no link,
// font or image from elsewhere); and it says what the trace says.
func TestSelfContained(t *testing.T) {
	for _, c := range []struct {
		name string
		says []string
		drop bool
	}{
		{"demo", []string{"pathtrace-demo-pod", "pathtrace-demo-node", "veth-pod", "DROPPED (request)",
			"IP_INADDRERRORS at ip_error+0x94", "DROPPED: forwarding disabled (net.ipv4.ip_forward=0) (confidence high)"}, true},
		{"dnat", []string{"NAT dst 10.96.0.10 -&gt; 10.52.2.2", "NAT src 10.52.2.2 -&gt; 10.96.0.10", "request delivered", "reply delivered"}, false},
		{"vxlan", []string{"flannel.1", "in vxlan 192.168.53.1 &gt; 192.168.53.2"}, false},
		{"merged", []string{"node: node1", "node: node2", "the wire"}, false},
		{"merged-dropped", []string{"node: node2", "DROPPED: forwarding disabled (net.ipv4.ip_forward=0) on node node2"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			svg := draw(t, c.name)
			dec := xml.NewDecoder(bytes.NewReader(svg))
			for {
				tok, err := dec.Token()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("not well-formed: %v", err)
				}
				if el, ok := tok.(xml.StartElement); ok {
					switch el.Name.Local {
					case "script", "image", "foreignObject", "style", "a":
						t.Errorf("a <%s> element", el.Name.Local)
					}
					for _, a := range el.Attr {
						if strings.HasPrefix(a.Name.Local, "on") || (strings.Contains(a.Value, "url(") && !strings.Contains(a.Value, "url(#")) ||
							a.Name.Local == "href" {
							t.Errorf("<%s %s=%q> reaches outside the picture", el.Name.Local, a.Name.Local, a.Value)
						}
					}
				}
			}
			for _, s := range c.says {
				if !bytes.Contains(svg, []byte(s)) {
					t.Errorf("the picture does not say %q", s)
				}
			}
			if got := bytes.Contains(svg, []byte(`id="`+DropMarkID+`"`)); got != c.drop {
				t.Errorf("drop mark drawn: %v, want %v", got, c.drop)
			}
		})
	}
}

// What the SVG says its size is, and where its drop mark is.
var (
	svgSize  = regexp.MustCompile(`<svg [^>]*width="([\d.]+)" height="([\d.]+)"`)
	dropMark = regexp.MustCompile(`id="` + DropMarkID + `" transform="translate\(([\d.]+),([\d.]+)\)"`)
)

func size(t *testing.T, svg []byte) (int, int) {
	t.Helper()
	m := svgSize.FindSubmatch(svg)
	if m == nil {
		t.Fatal("no size on <svg>")
	}
	w, _ := strconv.ParseFloat(string(m[1]), 64)
	h, _ := strconv.ParseFloat(string(m[2]), 64)
	return int(w + 0.5), int(h + 0.5)
}

// screenshot has headless Chromium (Debian's chromium; make deps installs it) draw the SVG,
// at its own size, as a PNG.
func screenshot(t *testing.T, svgPath, pngPath string, w, h int) image.Image {
	t.Helper()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (make deps installs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	abs, err := filepath.Abs(svgPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
		"--no-first-run", "--user-data-dir="+t.TempDir(), "--force-device-scale-factor=1",
		"--window-size="+strconv.Itoa(w)+","+strconv.Itoa(h), "--screenshot="+pngPath, "file://"+abs)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	f, err := os.Open(pngPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("chromium's screenshot: %v", err)
	}
	return img
}

// red counts the clearly red pixels within r of (x, y).
func red(img image.Image, x, y, r int) int {
	n := 0
	for py := y - r; py <= y+r; py++ {
		for px := x - r; px <= x+r; px++ {
			cr, cg, cb, _ := img.At(px, py).RGBA()
			if cr>>8 > 170 && cg>>8 < 80 && cb>>8 < 80 {
				n++
			}
		}
	}
	return n
}

// dark counts the pixels that are not near white: what a reader sees as ink.
func dark(img image.Image) int {
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			if (cr>>8)+(cg>>8)+(cb>>8) < 3*160 {
				n++
			}
		}
	}
	return n
}

// Looked at as a person sees it: Chromium draws the picture at its size, with ink on it and
// the drop's red cross where the SVG puts it (and no red there when nothing was dropped).
func TestChromiumDraws(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"demo", "merged-dropped", "dnat"} {
		t.Run(name, func(t *testing.T) {
			svg := draw(t, name)
			path := filepath.Join(dir, name+".svg")
			if err := os.WriteFile(path, svg, 0o644); err != nil {
				t.Fatal(err)
			}
			w, h := size(t, svg)
			img := screenshot(t, path, filepath.Join(dir, name+".png"), w, h)
			if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
				t.Errorf("drawn %dx%d, the SVG is %dx%d", b.Dx(), b.Dy(), w, h)
			}
			if n := dark(img); n < w*h/200 {
				t.Errorf("%d dark pixels of %d: the picture is blank", n, w*h)
			}
			m := dropMark.FindSubmatch(svg)
			if m == nil {
				if name != "dnat" {
					t.Fatal("no drop mark in the SVG")
				}
				return
			}
			x, _ := strconv.ParseFloat(string(m[1]), 64)
			y, _ := strconv.ParseFloat(string(m[2]), 64)
			if n := red(img, int(x), int(y), 8); n < 30 {
				t.Errorf("%d red pixels around the drop mark at (%.0f, %.0f), want its cross", n, x, y)
			}
			t.Logf("%s: %dx%d, drop mark at (%.0f, %.0f)", name, w, h, x, y)
		})
	}
}

// docs/demo.svg and docs/demo.png, which the README shows, are the demo's trace as this
// renderer draws it. -update redraws both.
func TestDocsPicture(t *testing.T) {
	svg := draw(t, "demo")
	const docSVG, docPNG = "../../docs/demo.svg", "../../docs/demo.png"
	if *update {
		if err := os.WriteFile(docSVG, svg, 0o644); err != nil {
			t.Fatal(err)
		}
		w, h := size(t, svg)
		screenshot(t, docSVG, docPNG, w, h)
		return
	}
	got, err := os.ReadFile(docSVG)
	if err != nil || !bytes.Equal(got, svg) {
		t.Errorf("%s is not what the renderer draws from the demo's trace (%v): go test ./render/svg -update", docSVG, err)
	}
	if _, err := os.Stat(docPNG); err != nil {
		t.Errorf("%v: go test ./render/svg -update", err)
	}
}
