// Package metrics exposes a node's state to Prometheus: delivery to and
// from each peer, the outbox per peer, store syncs, the directory in force,
// the node certificate's expiry and refused handshakes, with the Go runtime
// and process metrics. The node serves them over plain HTTP on the address
// the operator configures (metrics.listen), and on none by default. They
// carry no message content, but they name peers and count traffic: bind
// the listener to the loopback or a monitoring network.
//
// A nil *Metrics is valid and records nothing, so that callers need not
// know whether metrics are on.
package metrics

import (
	"crypto/x509"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/internal/relay"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// Sources are read when the metrics are scraped. Any may be nil.
type Sources struct {
	// Peers is the relay's delivery state per peer.
	Peers func() []relay.PeerStatus
	// Directory is the version in force, the pending proposals and the
	// forks reported.
	Directory func() (version uint64, pending, forks int)
	// Certificate is the node certificate presented now.
	Certificate func() *x509.Certificate
	// LastEventSeq is the newest event of the node's event log.
	LastEventSeq func() uint64
}

// Metrics holds a node's collectors.
type Metrics struct {
	reg *prometheus.Registry
	src Sources

	syncSeconds       prometheus.Histogram
	syncedUpdates     prometheus.Counter
	handshakesRefused prometheus.Counter
	sent              *prometheus.CounterVec // peer, result
	attemptsFailed    *prometheus.CounterVec // peer
	received          *prometheus.CounterVec // peer, result

	pending, reachable, lastContact, dirVersion, proposals, forks, certExpiry, events *prometheus.Desc
}

// New returns the collectors of one node, registered on a registry of its
// own.
func New(src Sources) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		src: src,
		syncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pocnet_store_sync_duration_seconds",
			Help: "Time from a group of updates applied to the store to the same group durable on disk.",
			// From a fast local disk (about 100 us) to a struggling one.
			Buckets: prometheus.ExponentialBuckets(100e-6, 2, 14),
		}),
		syncedUpdates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pocnet_store_updates_total",
			Help: "Updates committed durably to the store (many share one sync).",
		}),
		handshakesRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pocnet_tls_handshakes_refused_total",
			Help: "TLS handshakes the node refused: unknown CA, revoked, expired, another state's identity. The log says which.",
		}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pocnet_relay_sent_total",
			Help: "Envelopes this node delivered to a peer, by the peer's answer: delivered, rejected (by the recipient's policy) or a refusal code.",
		}, []string{"peer", "result"}),
		attemptsFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pocnet_relay_attempts_failed_total",
			Help: "Delivery calls to a peer that failed (unreachable, timed out); their envelopes are retried.",
		}, []string{"peer"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pocnet_relay_received_total",
			Help: "Envelopes a peer delivered to this node, by this node's answer: delivered, rejected (by this state's policy) or a refusal code.",
		}, []string{"peer", "result"}),
		pending: prometheus.NewDesc("pocnet_peer_pending_envelopes",
			"Envelopes queued or in flight for a peer.", []string{"peer"}, nil),
		reachable: prometheus.NewDesc("pocnet_peer_reachable",
			"1 if the last delivery call to the peer succeeded, 0 if it failed.", []string{"peer"}, nil),
		lastContact: prometheus.NewDesc("pocnet_peer_last_contact_timestamp_seconds",
			"When a delivery call to the peer last succeeded, or the peer last called (Unix time).", []string{"peer"}, nil),
		dirVersion: prometheus.NewDesc("pocnet_directory_version",
			"Number of the directory version in force.", nil, nil),
		proposals: prometheus.NewDesc("pocnet_directory_pending_proposals",
			"Directory changes proposed and not yet decided.", nil, nil),
		forks: prometheus.NewDesc("pocnet_directory_forks",
			"Conflicting directory versions reported since the node started; anything above 0 needs the members' attention.", nil, nil),
		certExpiry: prometheus.NewDesc("pocnet_certificate_expiry_timestamp_seconds",
			"When the node certificate presented now expires (Unix time).", nil, nil),
		events: prometheus.NewDesc("pocnet_events_total",
			"Events appended to the node's event log since its store was made.", nil, nil),
	}
	m.reg.MustRegister(m.syncSeconds, m.syncedUpdates, m.handshakesRefused, m.sent, m.attemptsFailed, m.received, scrape{m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Synced records a group of updates made durable in took.
func (m *Metrics) Synced(took time.Duration, updates int) {
	if m == nil {
		return
	}
	m.syncSeconds.Observe(took.Seconds())
	m.syncedUpdates.Add(float64(updates))
}

// HandshakeRefused records a refused TLS handshake.
func (m *Metrics) HandshakeRefused() {
	if m == nil {
		return
	}
	m.handshakesRefused.Inc()
}

// Sent records the outcome of one delivery call to peer: its results, or
// the error that left every envelope of it to retry.
func (m *Metrics) Sent(peer string, results []*pocnetv1.DeliveryResult, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.attemptsFailed.WithLabelValues(peer).Inc()
		return
	}
	for _, r := range results {
		m.sent.WithLabelValues(peer, Result(r)).Inc()
	}
}

// Received records this node's answers to one delivery from peer.
func (m *Metrics) Received(peer string, results []*pocnetv1.DeliveryResult) {
	if m == nil {
		return
	}
	for _, r := range results {
		m.received.WithLabelValues(peer, Result(r)).Inc()
	}
}

// Result names a delivery result for a label: delivered or rejected for a
// receipt (as its entry says), the refusal code in lower case otherwise
// (bad_signature, unavailable, ...).
func Result(r *pocnetv1.DeliveryResult) string {
	if ref := r.GetRefusal(); ref != nil {
		return strings.ToLower(strings.TrimPrefix(ref.GetCode().String(), "REFUSAL_CODE_"))
	}
	var e pocnetv1.ReceiptEntry
	if err := proto.Unmarshal(r.GetReceipt().GetEntry(), &e); err != nil {
		return "malformed"
	}
	return strings.ToLower(strings.TrimPrefix(e.GetOutcome().String(), "DELIVERY_OUTCOME_"))
}

// scrape collects what is read from the node when scraped.
type scrape struct{ m *Metrics }

func (s scrape) Describe(ch chan<- *prometheus.Desc) {
	m := s.m
	for _, d := range []*prometheus.Desc{m.pending, m.reachable, m.lastContact, m.dirVersion, m.proposals, m.forks, m.certExpiry, m.events} {
		ch <- d
	}
}

func (s scrape) Collect(ch chan<- prometheus.Metric) {
	m := s.m
	if m.src.Peers != nil {
		for _, p := range m.src.Peers() {
			ch <- prometheus.MustNewConstMetric(m.pending, prometheus.GaugeValue, float64(p.Pending), p.Peer)
			up := 0.0
			if p.Reachable {
				up = 1
			}
			ch <- prometheus.MustNewConstMetric(m.reachable, prometheus.GaugeValue, up, p.Peer)
			if !p.LastContact.IsZero() {
				ch <- prometheus.MustNewConstMetric(m.lastContact, prometheus.GaugeValue, float64(p.LastContact.UnixNano())/1e9, p.Peer)
			}
		}
	}
	if m.src.Directory != nil {
		v, pending, forks := m.src.Directory()
		ch <- prometheus.MustNewConstMetric(m.dirVersion, prometheus.GaugeValue, float64(v))
		ch <- prometheus.MustNewConstMetric(m.proposals, prometheus.GaugeValue, float64(pending))
		ch <- prometheus.MustNewConstMetric(m.forks, prometheus.GaugeValue, float64(forks))
	}
	if m.src.Certificate != nil {
		if c := m.src.Certificate(); c != nil {
			ch <- prometheus.MustNewConstMetric(m.certExpiry, prometheus.GaugeValue, float64(c.NotAfter.Unix()))
		}
	}
	if m.src.LastEventSeq != nil {
		ch <- prometheus.MustNewConstMetric(m.events, prometheus.CounterValue, float64(m.src.LastEventSeq()))
	}
}
