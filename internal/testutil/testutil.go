// Package testutil holds helpers shared by pathtrace's tests.
package testutil

import (
	"os"
	"testing"
)

// RequireRoot skips a test that needs root, saying why. Only privileged tests call it.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root to %s", why)
	}
}
