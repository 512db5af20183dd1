package node_test

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/internal/identity"
	"github.com/pocnet/pocnet/internal/testfed"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// scrape reads a node's /metrics as Prometheus does, and returns the raw
// text and the parsed families.
func scrape(t *testing.T, f *testfed.Federation, state string) (string, map[string]*dto.MetricFamily) {
	t.Helper()
	addr := f.Node(state).MetricsAddr()
	if addr == "" {
		t.Fatalf("%s serves no metrics", state)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics of %s: %s", state, resp.Status)
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatalf("metrics of %s do not parse: %v", state, err)
	}
	return string(raw), fams
}

// value returns the value of the metric of family name whose labels are
// labels (name=value pairs), and false if there is none.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	fam, ok := fams[name]
	if !ok {
		return 0, false
	}
	for _, m := range fam.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		match := len(got) == len(labels)/2
		for i := 0; match && i+1 < len(labels); i += 2 {
			match = got[labels[i]] == labels[i+1]
		}
		if !match {
			continue
		}
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		case m.GetHistogram() != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// TestMetrics: with metrics.listen set, each node serves what its operator
// monitors (delivery per peer and result, the outbox, syncs, the directory,
// the certificate's expiry, refused handshakes) and no message content.
func TestMetrics(t *testing.T) {
	f := testfed.Start(t, testfed.Options{Metrics: true})
	a := f.Contact("XAA", "policy")
	subject := "Metrics must not show this subject"
	delivered := send(t, a, "XBB", "technical", rfi(subject))
	waitStatus(t, a, delivered.GetId(), pocnetv1.Status_STATUS_DELIVERED)
	// XBB's technical PoC does not accept requests for consultations.
	consult := rfi(subject)
	consult.Kind = pocnetv1.Kind_KIND_REQUEST_FOR_CONSULTATIONS
	waitStatus(t, a, send(t, a, "XBB", "technical", consult).GetId(), pocnetv1.Status_STATUS_REJECTED)

	// A handshake XAA refuses: an operator certificate of a rogue CA.
	nb, na := valid()
	rogue, err := certs.NewCA(f.Certs.ID, "XAA", nb, na)
	if err != nil {
		t.Fatal(err)
	}
	eve := issue(t, rogue, identity.Operator(f.Certs.ID, "XAA", "technical", "eve"), nb, na)
	raw, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", f.Node("XAA").Addr, presenting(f, "XAA", eve))
	if err == nil {
		raw.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = raw.Read(make([]byte, 1))
		raw.Close()
	}
	if err == nil {
		t.Fatal("the rogue certificate was accepted")
	}

	var text string
	var fams map[string]*dto.MetricFamily
	// Receipts are recorded a moment after the recipient answers; the
	// outbox is empty once both are.
	testfed.WaitFor(t, "XAA's outbox to XBB empty", func() bool {
		text, fams = scrape(t, f, "XAA")
		v, ok := value(fams, "pocnet_peer_pending_envelopes", "peer", "XBB")
		return ok && v == 0
	})
	leaf := f.Certs.State("XAA").Node.Cert
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"pocnet_relay_sent_total", []string{"peer", "XBB", "result", "delivered"}, 1},
		{"pocnet_relay_sent_total", []string{"peer", "XBB", "result", "rejected"}, 1},
		{"pocnet_peer_reachable", []string{"peer", "XBB"}, 1},
		{"pocnet_directory_version", nil, 1},
		{"pocnet_directory_pending_proposals", nil, 0},
		{"pocnet_directory_forks", nil, 0},
		{"pocnet_certificate_expiry_timestamp_seconds", nil, float64(leaf.NotAfter.Unix())},
		{"pocnet_tls_handshakes_refused_total", nil, 1},
	} {
		if got, ok := value(fams, c.name, c.labels...); !ok || got != c.want {
			t.Errorf("XAA %s%v = %v (present: %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	for _, name := range []string{"pocnet_store_sync_duration_seconds", "pocnet_store_updates_total", "pocnet_events_total", "pocnet_peer_last_contact_timestamp_seconds"} {
		labels := []string{}
		if strings.HasPrefix(name, "pocnet_peer_") {
			labels = []string{"peer", "XBB"}
		}
		if got, ok := value(fams, name, labels...); !ok || got <= 0 {
			t.Errorf("XAA %s = %v (present: %v), want more than 0", name, got, ok)
		}
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Errorf("no Go runtime metrics")
	}

	btext, bfams := scrape(t, f, "XBB")
	for _, result := range []string{"delivered", "rejected"} {
		if got, ok := value(bfams, "pocnet_relay_received_total", "peer", "XAA", "result", result); !ok || got != 1 {
			t.Errorf("XBB pocnet_relay_received_total{peer=XAA,result=%s} = %v (present: %v), want 1", result, got, ok)
		}
	}
	if got, ok := value(bfams, "pocnet_tls_handshakes_refused_total"); !ok || got != 0 {
		t.Errorf("XBB counted %v refused handshakes, want 0", got)
	}
	for state, s := range map[string]string{"XAA": text, "XBB": btext} {
		if strings.Contains(s, subject) || strings.Contains(s, "Please share") {
			t.Errorf("the metrics of %s show message content", state)
		}
	}
}

// TestMetricsOff: without metrics.listen a node serves no metrics.
func TestMetricsOff(t *testing.T) {
	f := testfed.Start(t, testfed.Options{})
	if addr := f.Node("XAA").MetricsAddr(); addr != "" {
		t.Fatalf("metrics served on %s although metrics.listen is not set", addr)
	}
}
