// Package node assembles and runs one pocnet node: store, directory,
// exchange, relay worker, peer transport and the gRPC server with its
// interceptors, health service and optional reflection. It owns the start
// and shutdown order; it holds no domain logic.
package node

import (
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/dirsync"
	"github.com/pocnet/pocnet/internal/envelope"
	"github.com/pocnet/pocnet/internal/exchange"
	"github.com/pocnet/pocnet/internal/governance"
	"github.com/pocnet/pocnet/internal/grpcconf"
	"github.com/pocnet/pocnet/internal/identity"
	"github.com/pocnet/pocnet/internal/relay"
	"github.com/pocnet/pocnet/internal/store"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
	"github.com/pocnet/pocnet/server/auditsvc"
	"github.com/pocnet/pocnet/server/auth"
	"github.com/pocnet/pocnet/server/config"
	"github.com/pocnet/pocnet/server/contactsvc"
	"github.com/pocnet/pocnet/server/directorysvc"
	"github.com/pocnet/pocnet/server/fedsvc"
	"github.com/pocnet/pocnet/server/metrics"
	"github.com/pocnet/pocnet/server/peers"
	"github.com/pocnet/pocnet/server/recordsvc"
	"github.com/pocnet/pocnet/server/relaysvc"
)

// MaxRecvMessageSize bounds one incoming call. A delivery batch stays below
// it (relay.Config.MaxBatchBytes); an operator request above it is refused
// by gRPC with ResourceExhausted before it is read.
const MaxRecvMessageSize = 16 << 20

// Options start a node. Config is required; the rest serve tests and
// embedding.
type Options struct {
	Config *config.Config
	Logger *zap.Logger
	// Listener, if set, is served instead of listening on Config.Listen.
	Listener net.Listener
	// FS, if set, is the store's file system (fault injection in tests).
	FS vfs.FS
	// BaseBackoff, if set, overrides the relay's first retry delay.
	BaseBackoff time.Duration
	// Now, if set, is the node's clock.
	Now func() time.Time
	// Context, if set, bounds the wait of a node whose state is not yet a
	// member (see join); nil waits until admitted.
	Context context.Context
	// DirectorySyncInterval, if set, overrides the directory's anti-entropy
	// period (30s).
	DirectorySyncInterval time.Duration
}

// Node is a running node.
type Node struct {
	log          *zap.Logger
	cfg          *config.Config
	lis          net.Listener
	srv          *grpc.Server
	health       *health.Server
	db           *store.DB
	worker       *relay.Worker
	transport    *peers.Transport
	dir          *directory.Source
	mgr          *dirsync.Manager // the signed directory
	syncInterval time.Duration
	self         identity.ID
	now          func() time.Time
	served       chan error
	stopOnce     sync.Once
	announce     sync.WaitGroup
	ctx          context.Context // background work; cancelled by Stop
	cancel       context.CancelFunc
	rewrap       sync.Mutex // held while a rewrap runs
	certs        *identity.CertFile
	metrics      *metrics.Metrics // nil unless metrics.listen is set
	metricsSrv   *http.Server
	metricsLis   net.Listener
	// What the metrics read, published as Start makes it: metrics are
	// served from the moment the store is open, a joining node's included.
	scrape struct {
		mgr    atomic.Pointer[dirsync.Manager]
		worker atomic.Pointer[relay.Worker]
		certs  atomic.Pointer[identity.CertFile]
	}
}

// Start opens everything and serves. On error, whatever was opened is
// closed again.
func Start(o Options) (n *Node, err error) {
	cfg := o.Config
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	genesis, err := governance.LoadGenesis(cfg.Genesis)
	if err != nil {
		return nil, err
	}
	// The genesis is trusted only once every founder's signature verifies;
	// it is checked before anything is opened.
	anchor, err := governance.NewChain(genesis, now())
	if err != nil {
		return nil, fmt.Errorf("genesis %s: %w", cfg.Genesis, err)
	}
	federation := anchor.Latest().Directory().Federation()
	self := identity.Node(federation, cfg.State)
	signingKey, encKeys, err := loadKeyFiles(cfg)
	if err != nil {
		return nil, err
	}
	keys, err := cfg.DataKeys()
	if err != nil {
		return nil, err
	}
	lis := o.Listener
	if lis == nil {
		if lis, err = net.Listen("tcp", cfg.Listen); err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
	}
	n = &Node{log: log, cfg: cfg, lis: lis, self: self, now: now, served: make(chan error, 1), syncInterval: o.DirectorySyncInterval}
	// The hooks stay nil without metrics: nothing is spent on them.
	var (
		onSync     func(time.Duration, int)
		onResults  func(string, []*pocnetv1.DeliveryResult, error)
		onReceived func(string, []*pocnetv1.DeliveryResult)
	)
	if cfg.Metrics.Listen != "" {
		if n.metricsLis, err = net.Listen("tcp", cfg.Metrics.Listen); err != nil {
			lis.Close()
			return nil, fmt.Errorf("metrics.listen: %w", err)
		}
		n.metrics = metrics.New(n.metricsSources())
		onSync, onResults, onReceived = n.metrics.Synced, n.metrics.Sent, n.metrics.Received
	}
	n.db, err = store.Open(cfg.DataDir, store.Options{FS: o.FS, Logger: log.Named("store"), Keys: keys, OnSync: onSync})
	if err != nil {
		lis.Close()
		if n.metricsLis != nil {
			n.metricsLis.Close()
		}
		return nil, err
	}
	db := n.db
	// n itself is nil once an error is returned: the cleanup keeps its own.
	built := n
	defer func() {
		if err != nil {
			built.closeAll()
		}
	}()
	n.serveMetrics()
	signer, err := envelope.NewSigner(signingKey)
	if err != nil {
		return nil, fmt.Errorf("keys.signing: %w", err)
	}
	opener := envelope.NewOpener(federation, cfg.State, encKeys)
	n.mgr, err = dirsync.New(dirsync.Config{
		State: cfg.State, Genesis: genesis, Store: db, Signer: signer,
		SigningKeys:      map[string]ed25519.PrivateKey{signer.KeyID(): signingKey},
		AddEncryptionKey: opener.AddKey,
		Logger:           log.Named("directory"), Now: now,
		Interval: o.DirectorySyncInterval,
	})
	if err != nil {
		return nil, err
	}
	n.scrape.mgr.Store(n.mgr)
	dir := n.mgr.Source()
	n.dir = dir
	if !n.mgr.IsMember() {
		// Until admitted, the certificate cannot verify against the
		// directory in force: it is only presented to the members' nodes,
		// which judge it by theirs.
		cert, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		joining := peers.New(peers.Config{Certificate: &cert, Directory: dir, Logger: log.Named("peers")})
		n.mgr.SetPeers(joining)
		err = n.join(o.Context)
		n.mgr.SetPeers(nil)
		joining.Close()
		if err != nil {
			return nil, err
		}
	}
	d := dir.Directory()
	// Refuse to start with a certificate the peers would refuse: it must
	// name this node and chain to this state's CA in the directory.
	n.certs, err = loadCertificate(cfg.TLS.Cert, cfg.TLS.Key, dir, self, now, func(err error) { built.certificateChanged(err) })
	if err != nil {
		return nil, err
	}
	n.scrape.certs.Store(n.certs)
	n.transport = peers.New(peers.Config{GetCertificate: n.certs.Certificate, Directory: dir, Logger: log.Named("peers")})
	n.mgr.SetPeers(n.transport)
	if err := checkKeys(cfg.State, d, signer, opener); err != nil {
		return nil, err
	}
	if err := n.recordStart(n.certs.Certificate(), d); err != nil {
		return nil, err
	}
	ex, err := exchange.New(exchange.Config{
		State: cfg.State, Directory: dir, Store: db, Signer: signer, Sealer: envelope.NewSealer(d.Federation(), cfg.State, now), Opener: opener,
		DirectoryBehind: n.mgr.Nudge, Logger: log.Named("exchange"), Now: now,
		OnReceived: onReceived,
	})
	if err != nil {
		return nil, err
	}
	n.worker = relay.New(relay.Config{
		Transport: n.transport, Handler: ex, Logger: log.Named("relay"), Now: now,
		BaseBackoff: o.BaseBackoff, MaxBackoff: cfg.Relay.MaxBackoff, DeliverTimeout: cfg.Relay.DeliverTimeout,
		MaxBatchBytes: MaxRecvMessageSize / 2,
		OnResults:     onResults,
	})
	n.scrape.worker.Store(n.worker)
	ex.SetRelay(n.worker)
	queued, err := ex.Recover()
	if err != nil {
		return nil, err
	}

	authz := &auth.Authorizer{Self: self, Directory: dir, Logger: log.Named("auth")}
	n.srv = grpc.NewServer(append(grpcconf.ServerOptions(),
		grpc.Creds(credentials.NewTLS(n.serverTLS(dir, self, now))),
		grpc.ChainUnaryInterceptor(authz.Unary),
		grpc.ChainStreamInterceptor(authz.Stream),
		grpc.MaxRecvMsgSize(MaxRecvMessageSize),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)...)
	contactsvc.Register(n.srv, contactsvc.New(contactsvc.Config{
		Exchange: ex, Directory: dir, Peers: n.worker.Status, Federation: d.Federation(), State: cfg.State,
		LastSeq: func() uint64 { s, _ := db.LastSeq(); return s },
	}))
	recordsvc.Register(n.srv, recordsvc.New(recordsvc.Config{Exchange: ex}))
	relaysvc.Register(n.srv, relaysvc.New(relaysvc.Config{Exchange: ex, State: cfg.State, HeardFrom: n.worker.HeardFrom, Now: now}))
	auditsvc.Register(n.srv, auditsvc.New(auditsvc.Config{Log: db, Now: now}))
	fedsvc.Register(n.srv, fedsvc.New(n.mgr))
	directorysvc.Register(n.srv, directorysvc.New(directorysvc.Config{Directory: n.mgr}))
	n.health = health.NewServer()
	healthpb.RegisterHealthServer(n.srv, n.health)
	if cfg.Reflection {
		reflection.Register(n.srv)
	}
	n.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	go func() { n.served <- n.srv.Serve(lis) }()

	ctx, cancel := context.WithCancel(context.Background())
	n.ctx, n.cancel = ctx, cancel
	n.mgr.Start()
	n.announce.Add(1)
	go func() { defer n.announce.Done(); authz.Run(ctx) }() // ends running streams a new directory no longer trusts
	n.announceTo(ctx, d)
	log.Info("node started", zap.String("identity", self.String()), zap.String("listen", lis.Addr().String()),
		zap.Int("members", len(d.States())), zap.Uint64("directory_version", n.mgr.Latest().Number()), zap.Int("queued_for_delivery", queued), zap.Bool("reflection", cfg.Reflection))
	return n, nil
}

// join waits until this node's state is a member of the directory: a
// participant the members are admitting installs the genesis, starts its
// node, and the node asks the members' nodes for newer versions until one
// admits it. Until then their nodes refuse its certificate, so every round
// fails quietly; the wait is logged.
func (n *Node) join(ctx context.Context) error {
	if ctx == nil {
		ctx = context.Background()
	}
	every := 2 * time.Second
	if i := n.syncInterval; i > 0 && i < every {
		every = i
	}
	logged := time.Time{}
	for !n.mgr.IsMember() {
		if time.Since(logged) > time.Minute {
			n.log.Warn("waiting to be admitted: this state is not a member of the directory; asking the members' nodes for newer versions",
				zap.String("state", n.cfg.State), zap.Uint64("directory_version", n.mgr.Latest().Number()), zap.Duration("every", every))
			logged = time.Now()
		}
		n.mgr.SyncNow()
		if n.mgr.IsMember() {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("state: %s is not a member of the federation's directory (version %d) and was not admitted while the node waited: %w",
				n.cfg.State, n.mgr.Latest().Number(), ctx.Err())
		case <-time.After(every):
		}
	}
	n.log.Info("admitted: this state is a member of the directory", zap.Uint64("directory_version", n.mgr.Latest().Number()))
	return nil
}

// serverTLS is the node's server TLS configuration. A refused handshake is
// logged with its reason: TLS 1.3 tells the refused client only "bad
// certificate", and the operator must be able to see why (revoked, unknown
// CA, expired, another state's CA). The log is sampled so that a flood of
// bad handshakes cannot flood it.
func (n *Node) serverTLS(dir *directory.Source, self identity.ID, now func() time.Time) *tls.Config {
	cfg := identity.ServerConfigFunc(n.certs.Certificate, dir, self, now)
	verify := cfg.VerifyConnection
	log := n.log.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewSamplerWithOptions(c, time.Minute, 10, 100)
	}))
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		err := verify(cs)
		if err != nil {
			n.metrics.HandshakeRefused()
			log.Warn("handshake refused", zap.Error(err))
		}
		return err
	}
	return cfg
}

// Directory returns the node's directory manager.
func (n *Node) Directory() *dirsync.Manager { return n.mgr }

// announceTo pings every peer once, so that peers holding envelopes for
// this node retry them at once instead of waiting out their backoff.
func (n *Node) announceTo(ctx context.Context, d *directory.Directory) {
	for _, s := range d.States() {
		if s == n.self.State {
			continue
		}
		n.announce.Add(1)
		go func(state string) {
			defer n.announce.Done()
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := n.transport.Ping(cctx, state); err != nil {
				n.log.Debug("peer not reachable at start", zap.String("peer", state), zap.Error(err))
			}
		}(s)
	}
}

// ReloadDataKeys reads the data keys again from data_key_file (or the
// environment) and seals every new value under the current one at once,
// without a restart; pocnode calls it on SIGHUP. Values still sealed under
// an older key are then resealed in the background; the log (and the audit
// log) says when that is done and the old key can be deleted from the file.
// A key file that drops a key still in use is refused and changes nothing.
func (n *Node) ReloadDataKeys() error {
	r, err := n.cfg.DataKeys()
	if err != nil {
		return err
	}
	if err := n.db.SetKeys(r); err != nil {
		return fmt.Errorf("data keys: %w", err)
	}
	n.log.Info("data keys reloaded", zap.Stringer("current", r.Current()), zap.Int("keys", len(r.IDs())))
	n.recordAdmin(fmt.Sprintf("data keys reloaded: %d keys, current %s", len(r.IDs()), r.Current()))
	n.announce.Add(1)
	go func() {
		defer n.announce.Done()
		// One rewrap at a time; a reload during a rewrap queues one more
		// pass, which picks up the newest key.
		n.rewrap.Lock()
		defer n.rewrap.Unlock()
		start := time.Now()
		resealed, err := n.db.Rewrap(n.ctx)
		if err != nil {
			n.log.Warn("resealing under the current data key stopped; reload again to resume", zap.Int("resealed", resealed), zap.Error(err))
			return
		}
		n.log.Info("every value is sealed under the current data key", zap.Int("resealed", resealed), zap.Duration("took", time.Since(start)))
		n.recordAdmin(fmt.Sprintf("every value resealed under data key %s (%d resealed)", n.db.Keys().Current(), resealed))
	}()
	return nil
}

// Addr returns the address the node serves on.
func (n *Node) Addr() string { return n.lis.Addr().String() }

// MetricsAddr returns the address the node serves /metrics on, or "" when
// metrics.listen is not set.
func (n *Node) MetricsAddr() string {
	if n.metricsLis == nil {
		return ""
	}
	return n.metricsLis.Addr().String()
}

// metricsSources are what the metrics read from the node when scraped.
// They run only once Start has set what they read, or find it nil.
func (n *Node) metricsSources() metrics.Sources {
	return metrics.Sources{
		Peers: func() []relay.PeerStatus {
			if w := n.scrape.worker.Load(); w != nil {
				return w.Status()
			}
			return nil
		},
		Directory: func() (uint64, int, int) {
			m := n.scrape.mgr.Load()
			if m == nil {
				return 0, 0, 0
			}
			return m.Latest().Number(), m.Pending(), len(m.Forks())
		},
		Certificate: func() *x509.Certificate {
			if c := n.scrape.certs.Load(); c != nil {
				return c.Leaf()
			}
			return nil
		},
		LastEventSeq: func() uint64 { s, _ := n.db.LastSeq(); return s },
	}
}

// serveMetrics serves /metrics on the metrics listener, if there is one.
func (n *Node) serveMetrics() {
	if n.metricsLis == nil {
		return
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", n.metrics.Handler())
	n.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := n.metricsSrv.Serve(n.metricsLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("metrics listener stopped", zap.Error(err))
		}
	}()
}

// Stop shuts down in order: health NOT_SERVING, graceful stop of the gRPC
// server (forced after the shutdown timeout), relay worker, peer
// connections, and the store last, once.
func (n *Node) Stop() {
	n.stopOnce.Do(func() {
		n.health.Shutdown()
		done := make(chan struct{})
		go func() {
			n.srv.GracefulStop()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(n.cfg.ShutdownTimeout):
			n.log.Warn("graceful stop timed out; closing remaining calls")
			n.srv.Stop()
			<-done
		}
		n.closeAll()
		n.log.Info("node stopped")
	})
}

func (n *Node) closeAll() {
	if n.metricsSrv != nil {
		n.metricsSrv.Close()
	}
	if n.cancel != nil {
		n.cancel()
	}
	n.announce.Wait()
	if n.srv != nil {
		n.srv.Stop()
	}
	if n.worker != nil {
		n.worker.Stop()
	}
	if n.mgr != nil {
		n.mgr.Stop()
	}
	if n.transport != nil {
		n.transport.Close()
	}
	// Last before the store closes: nothing the node does is recorded after
	// its stop. Only an orderly stop (after Start succeeded) is recorded.
	if n.health != nil {
		n.recordStop()
	}
	if err := n.db.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
		n.log.Error("closing store", zap.Error(err))
	}
}

// Done returns a channel that receives the serve error when the server
// stops on its own.
func (n *Node) Done() <-chan error { return n.served }

// loadKeyFiles loads the private keys the configuration names.
func loadKeyFiles(cfg *config.Config) (ed25519.PrivateKey, map[string]hpke.PrivateKey, error) {
	sk, err := envelope.LoadSigningKey(cfg.Keys.Signing)
	if err != nil {
		return nil, nil, fmt.Errorf("keys.signing: %w", err)
	}
	priv := map[string]hpke.PrivateKey{}
	for i, path := range cfg.Keys.Encryption {
		k, id, err := envelope.LoadEncryptionKey(path)
		if err != nil {
			return nil, nil, fmt.Errorf("keys.encryption[%d]: %w", i, err)
		}
		priv[id] = k
	}
	return sk, priv, nil
}

// checkKeys refuses to start with a signing key the peers would refuse or
// with a published encryption key the node could not open: an envelope
// sealed to it would be undeliverable. The keys are those of the files and
// those the node made when its state rotated them (kept in its store).
func checkKeys(state string, d *directory.Directory, signer *envelope.Signer, opener *envelope.Opener) error {
	if pk, ok := d.SigningKey(state, signer.KeyID()); !ok || pk.GetStatus() != pocnetv1.KeyStatus_KEY_STATUS_ACTIVE {
		return fmt.Errorf("keys.signing: key %s is not an ACTIVE signing key of %s in the directory, and the node holds no other that is", signer.KeyID(), state)
	}
	for _, k := range d.EncryptionKeys(state) {
		if !opener.Holds(k.GetKeyId()) && k.GetStatus() != pocnetv1.KeyStatus_KEY_STATUS_REVOKED {
			return fmt.Errorf("keys.encryption: the directory publishes encryption key %s (%s) for %s, but neither a file listed nor the node's store holds its private key", k.GetKeyId(), k.GetStatus(), state)
		}
	}
	return nil
}
