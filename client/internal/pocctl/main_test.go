package pocctl

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that the tests leave no goroutine behind: neither
// pocctl's connections nor the real nodes the directory tests start.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Pebble goroutines that outlive a closed store briefly are not ours.
		goleak.IgnoreTopFunction("github.com/cockroachdb/pebble/v2.(*DB).maybeScheduleCompaction"),
		goleak.IgnoreTopFunction("time.Sleep"),
	)
}
