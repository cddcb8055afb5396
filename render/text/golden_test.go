package text

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/pathtrace/pathtrace/render/internal/tracetest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// TestGolden pins the whole text of each scene, uncoloured. Review a -update diff as a user
// would read the output: it is the product.
func TestGolden(t *testing.T) {
	for _, s := range tracetest.Scenes() {
		t.Run(s.Name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Render(&buf, s.Build(), Options{}); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", s.Name+".golden")
			if *update {
				if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./render/text -update to create it)", err)
			}
			if d := cmp.Diff(string(want), buf.String()); d != "" {
				t.Errorf("%s differs (-want +got); if the change is intended, run go test ./render/text -update\n%s", path, d)
			}
		})
	}
}
