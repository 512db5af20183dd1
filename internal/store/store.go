package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/internal/audit"
	"github.com/pocnet/pocnet/internal/datakey"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// ErrClosed is returned by Update after Close.
var ErrClosed = errors.New("store: closed")

// ErrStorage wraps failures of the disk or the database. An update that
// fails before its batch is applied leaves nothing behind. An update whose
// sync fails may or may not be on disk; the store then refuses every later
// update, including those that only read, until it is reopened.
var ErrStorage = errors.New("store: storage failure")

// Options configure Open.
type Options struct {
	// FS is the file system; nil means the operating system's. Tests pass
	// vfs.NewCrashableMem or an errorfs to inject crashes and I/O errors.
	FS     vfs.FS
	Logger *zap.Logger
	// MaxGroup bounds how many updates share one batch; 0 means 512.
	MaxGroup int
	// Keys seal every value written and open every value read; required.
	// SetKeys replaces them while the store runs.
	Keys *datakey.Ring
	// OnSync, if set, is told of every sync: how long it took from the
	// moment its group was applied, and how many updates it made durable
	// (deferred ones applied before it included). It runs in the sync
	// goroutine and must be quick.
	OnSync func(took time.Duration, updates int)

	// maxDefer replaces MaxDefer, for tests; 0 means MaxDefer.
	maxDefer time.Duration
	// growLog leaves Pebble's logs to grow with each write, as Pebble
	// writes them (walfill.go); for the benchmark that compares both.
	growLog bool
}

// DB is a node's database.
type DB struct {
	db       *pebble.DB
	log      *zap.Logger
	onSync   func(time.Duration, int)
	reqs     chan *request
	maxGroup int
	maxDefer time.Duration
	done     chan struct{}
	stopOnce sync.Once
	closeMu  sync.RWMutex
	closed   bool

	// keys is read by every seal and open and swapped by SetKeys, without
	// stopping either.
	keys     atomic.Pointer[datakey.Ring]
	setKeys  sync.Mutex // serializes SetKeys
	indexKey []byte     // HMAC key of the request index; set in Open, then read-only

	// failed holds the error of a failed sync. Pebble applies a batch
	// before its sync, so what the failed group wrote is readable though not
	// durable; from then on the store refuses every update, even one that
	// only reads, rather than hand out what may be lost (a receipt, say).
	failed atomic.Pointer[error]

	// nextSeq and nextHead are the newest event seq and audit head applied
	// to Pebble, owned by the commit goroutine.
	nextSeq  uint64
	nextHead audit.Head

	// recent holds the newest events applied, for watchers (Events), and
	// records the latest state of the messages written lately (Record).
	recent  recentEvents
	records recentRecords
	// contexts are the sealing contexts whose encapsulated key an applied
	// group wrote lately ('c'), so that PutMessage writes each once rather
	// than with every envelope; owned by the commit goroutine, and
	// forgotten in bulk past maxContexts (a key written twice is harmless).
	contexts map[string]struct{}

	mu      sync.Mutex
	lastSeq uint64        // newest committed event seq
	changed chan struct{} // closed and replaced when events are committed
	// auditHead is the newest committed audit record (audit.go).
	auditHead audit.Head
}

type request struct {
	fn       func(*Tx) error
	err      chan error
	deferred bool // UpdateDeferred
}

// Open opens (creating if needed) the database in dir. It fails if o.Keys
// cannot open the store's values.
func Open(dir string, o Options) (*DB, error) {
	if o.Keys == nil {
		return nil, errors.New("store: Options.Keys is required: every value is sealed with the node's data key")
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.MaxGroup <= 0 {
		o.MaxGroup = 512
	}
	if o.maxDefer <= 0 {
		o.maxDefer = MaxDefer
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
	// Logs are zero-filled ahead of Pebble's writes (walfill.go).
	fs := vfs.FS(walFillFS{FS: o.FS, fill: defaultFill})
	if o.growLog {
		fs = o.FS
	}
	po := &pebble.Options{
		FS: fs, Logger: pebbleLogger{o.Logger.Sugar()},
		// A larger memtable absorbs a crisis burst with fewer flushes and
		// less compaction work competing with the commit path for CPU.
		MemTableSize: 32 << 20,
		// WALFailover stays unset: UpdateDeferred relies on one log at a
		// time, written and synced in order, each synced before the next.
	}
	// Every delivery first looks up envelope ids that are almost always
	// new; Bloom filters answer most of those misses without reading a
	// data block.
	po.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	// Every value is sealed, and ciphertext does not compress: Snappy only
	// spent CPU in every flush and compaction trying. (The setting applies
	// to every level below L0 too.)
	po.Levels[0].Compression = func() *sstable.CompressionProfile { return sstable.NoCompression }
	// Envelopes, the only values of 1 KiB or more, are written once and
	// never changed: Pebble keeps them apart in blob files, written at
	// flush, which compactions then no longer rewrite. That cut the
	// background work (and the bytes written) per message by about a
	// sixth. A store of an older format is upgraded when opened, once and
	// for good; the Pebble this node is built with reads both.
	po.FormatMajorVersion = pebble.FormatValueSeparation
	po.Experimental.ValueSeparationPolicy = func() pebble.ValueSeparationPolicy {
		return pebble.ValueSeparationPolicy{
			Enabled:     true,
			MinimumSize: 1024,
			// As Pebble's own benchmark tool sets them. Envelopes are never
			// rewritten or deleted, so their blob files hold no garbage to
			// reclaim: blob files are not rewritten for space.
			MaxBlobReferenceDepth: 10,
			RewriteMinimumAge:     5 * time.Minute,
			TargetGarbageRatio:    1.0,
		}
	}
	pdb, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("%w: open %s: %v", ErrStorage, dir, err)
	}
	d := &DB{
		db:       pdb,
		log:      o.Logger,
		onSync:   o.OnSync,
		reqs:     make(chan *request, o.MaxGroup),
		maxGroup: o.MaxGroup,
		maxDefer: o.maxDefer,
		done:     make(chan struct{}),
		changed:  make(chan struct{}),
		contexts: map[string]struct{}{},
	}
	d.keys.Store(o.Keys)
	if d.lastSeq, err = d.readLastSeq(); err != nil {
		pdb.Close()
		return nil, err
	}
	if d.auditHead, err = d.readAuditHead(); err != nil {
		pdb.Close()
		return nil, err
	}
	d.nextSeq, d.nextHead = d.lastSeq, d.auditHead
	d.recent.next = d.lastSeq + 1
	go d.commitLoop()
	if d.indexKey, err = d.loadIndexKey(); err != nil {
		d.Close()
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	return d, nil
}

// loadIndexKey reads the request index's HMAC key, making it if the store
// is new. Being sealed like every value, it also proves at start that the
// key ring fits this store: a wrong key fails here, not at the first read.
func (d *DB) loadIndexKey() ([]byte, error) {
	v, closer, err := d.db.Get(indexKeyKey)
	if err == nil {
		defer closer.Close()
		k, err := d.open(indexKeyKey, v)
		if err != nil {
			return nil, fmt.Errorf("the data keys do not open this store: %w", err)
		}
		if len(k) != indexKeyLen {
			return nil, fmt.Errorf("%w: request index key has %d bytes, want %d", ErrStorage, len(k), indexKeyLen)
		}
		return k, nil
	}
	if !errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("%w: %v", ErrStorage, err)
	}
	it, err := d.db.NewIter(nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStorage, err)
	}
	empty := !it.First()
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStorage, err)
	}
	if !empty {
		// Its values were written in clear, before this store sealed them.
		return nil, fmt.Errorf("%w: the store has data but no request index key: it was written without encryption at rest and cannot be opened", ErrStorage)
	}
	k := make([]byte, indexKeyLen)
	rand.Read(k)
	err = d.Update(context.Background(), func(tx *Tx) error {
		tx.set(indexKeyKey, k)
		return nil
	})
	return k, err
}

// open checks and decrypts the value v read under key.
func (d *DB) open(key, v []byte) ([]byte, error) {
	p, err := d.keys.Load().Open(v, key)
	if err != nil {
		return nil, fmt.Errorf("%w: value of key %s: %w", ErrStorage, keyName(key), err)
	}
	return p, nil
}

func (d *DB) readLastSeq() (uint64, error) {
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: []byte{nsEvent}, UpperBound: []byte{nsEvent + 1}})
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrStorage, err)
	}
	defer it.Close()
	if !it.Last() {
		return 0, it.Error()
	}
	k := it.Key()
	if len(k) != 1+seqLen {
		return 0, fmt.Errorf("%w: malformed event key %x", ErrStorage, k)
	}
	return beUint64(k[1:]), nil
}

// Close stops the commit goroutine after the updates already queued and
// closes the database. It must be called once, after every writer stopped.
func (d *DB) Close() error {
	d.closeMu.Lock()
	d.closed = true
	d.closeMu.Unlock()
	close(d.reqs)
	<-d.done
	return d.db.Close()
}

// Update runs fn in the commit goroutine with a Tx that sees every write
// committed or pending before it, and commits fn's writes atomically and
// durably (pebble.Sync) before returning nil. If fn returns an error, none of
// its writes are applied and that error is returned. fn must be quick and
// must not block: it runs serialized with every other update.
func (d *DB) Update(ctx context.Context, fn func(*Tx) error) error {
	return d.update(ctx, &request{fn: fn, err: make(chan error, 1)})
}

// MaxDefer is the longest an UpdateDeferred waits for a sync made for
// another update before the store makes one for it alone.
const MaxDefer = 5 * time.Millisecond

// UpdateDeferred is Update for work that no one is waiting on in a hurry
// (recording a peer's receipt, say). It is applied as soon as the commit
// goroutine reaches it, like any update, but when its group holds only
// deferred updates it asks for no fsync of its own: the next update's sync
// makes it durable too (Pebble writes and syncs its logs in order, and
// syncs a log before it starts the next), or the store syncs it alone
// after MaxDefer. It is exactly as atomic and durable as Update when it
// returns; what it saves is an fsync that would delay the Update behind it,
// and the work it would add to that update's group.
//
// Until then what it wrote is readable, by reads outside Update too, though
// it is not yet durable: it must be work whose loss in a crash is harmless
// (a receipt lost is asked for again with one more delivery).
func (d *DB) UpdateDeferred(ctx context.Context, fn func(*Tx) error) error {
	return d.update(ctx, &request{fn: fn, err: make(chan error, 1), deferred: true})
}

func (d *DB) update(ctx context.Context, r *request) error {
	d.closeMu.RLock()
	if d.closed {
		d.closeMu.RUnlock()
		return ErrClosed
	}
	select {
	case d.reqs <- r:
	case <-ctx.Done():
		d.closeMu.RUnlock()
		return ctx.Err()
	}
	d.closeMu.RUnlock()
	// Once queued the update runs to completion whatever ctx says: the caller
	// must learn whether it was committed, so it waits.
	return <-r.err
}

// commitLoop runs groups of updates one after another. A group's batch is
// applied (readable by the next group) and handed to syncLoop, which waits
// for it to be durable before anyone is answered; meanwhile the next group
// is built, so that one group's fsync overlaps the next group's work and
// Pebble syncs both together.
//
// A group of deferred updates only is applied without a sync of its own
// (unsynced): syncLoop holds it until a later group's sync, which covers
// every record written to the log before it. Whenever something is held,
// a sync comes within MaxDefer: the next group that asks for one, or a
// group made only to sync (syncOnly).
func (d *DB) commitLoop() {
	defer close(d.done)
	inflight := make(chan *applied, 16)
	synced := make(chan struct{})
	go d.syncLoop(inflight, synced)
	defer func() {
		close(inflight)
		<-synced
	}()
	// held is whether syncLoop holds groups that no sync covers yet.
	held := false
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	hand := func(a *applied) {
		inflight <- a
		switch {
		case a.unsynced:
			if !held {
				held = true
				timer.Reset(d.maxDefer)
			}
		case a.b != nil:
			// Its sync covers every group held before it.
			held = false
			timer.Stop()
		case held:
			// A group that wrote nothing (a read, or updates that all
			// failed) is answered after what it may have read: at once.
			held = false
			timer.Stop()
			inflight <- d.syncOnly()
		}
	}
	for {
		var group []*request
		select {
		case r, ok := <-d.reqs:
			if !ok {
				if held {
					inflight <- d.syncOnly()
				}
				return
			}
			group = append(make([]*request, 0, 8), r)
		case <-timer.C:
			if held {
				held = false
				inflight <- d.syncOnly()
			}
			continue
		}
	drain:
		for len(group) < d.maxGroup {
			select {
			case r, ok := <-d.reqs:
				if !ok {
					break drain
				}
				group = append(group, r)
			default:
				break drain
			}
		}
		hand(d.commitGroup(group))
	}
}

// syncOnly returns a group that writes nothing but a log record, applied
// with a sync: once durable, so is every group before it.
func (d *DB) syncOnly() *applied {
	if err := d.failure(); err != nil {
		return &applied{}
	}
	b := d.db.NewBatch()
	_ = b.LogData(nil, nil)
	if err := d.db.ApplyNoSyncWait(b, pebble.Sync); err != nil {
		b.Close()
		err = fmt.Errorf("%w: updates applied without a sync of their own could not be synced, and the store takes no more updates: %v", ErrStorage, err)
		d.failed.Store(&err)
		d.log.Error("store sync failed; the node must be restarted", zap.Error(err))
		return &applied{}
	}
	return &applied{b: b, seq: d.nextSeq, head: d.nextHead, at: time.Now()}
}

// applied is a group whose batch was applied, or failed, waiting for its
// outcome to be made durable and answered.
type applied struct {
	b     *pebble.Batch // nil if nothing was applied
	group []*request
	errs  []error
	seq   uint64     // newest event seq once durable
	head  audit.Head // audit head once durable
	at    time.Time  // when the batch was applied
	// unsynced is a batch applied without a sync of its own: a later
	// group's sync makes it durable.
	unsynced bool
	// durable is told the sync's outcome, for the OnApplied hooks of the
	// group's updates; nil if none has any.
	durable *Durable
}

// Durable is the outcome of making an applied update durable. Done is
// closed once the outcome is known; Err then tells it: nil once the update
// is on disk, the sync's failure otherwise.
type Durable struct {
	done chan struct{}
	err  error
}

// Done returns a channel closed once the outcome is known.
func (d *Durable) Done() <-chan struct{} { return d.done }

// Err returns nil if the update is durable, or why it may not be. It must
// be called only once Done is closed.
func (d *Durable) Err() error { return d.err }

func (d *Durable) resolve(err error) {
	d.err = err
	close(d.done)
}

// syncLoop answers groups in commit order once their batches are durable,
// and only then publishes their events and audit records. A group applied
// without a sync of its own (and any group after it that wrote nothing) is
// held until the next sync.
func (d *DB) syncLoop(in <-chan *applied, done chan<- struct{}) {
	defer close(done)
	var held []*applied
	for a := range in {
		if a.unsynced || (a.b == nil && len(held) > 0 && d.failure() == nil) {
			held = append(held, a)
			continue
		}
		// After a failed sync nothing is durable any more, not even what a
		// later update only reads: every later update fails (see failed).
		err := d.failure()
		// updates counts what this sync makes durable: the group's own
		// and those held for it, reads left out.
		updates := 0
		if a.b != nil {
			updates = len(a.group)
		}
		for _, h := range held {
			if h.b != nil {
				updates += len(h.group)
			}
		}
		if a.b != nil {
			// Pebble must be done with a batch before it is closed, even
			// after an earlier failure made its outcome moot.
			if serr := a.b.SyncWait(); serr != nil && err == nil {
				err = fmt.Errorf("%w: sync failed, and the store takes no more updates: %v", ErrStorage, serr)
				d.failed.Store(&err)
				d.log.Error("store sync failed; the node must be restarted", zap.Error(serr), zap.Int("updates", updates))
			}
		}
		if a.b != nil && err == nil && d.onSync != nil {
			d.onSync(time.Since(a.at), updates)
		}
		for _, h := range held {
			d.answer(h, err)
		}
		held = held[:0]
		d.answer(a, err)
	}
	for _, h := range held {
		// Not reached: commitLoop syncs what is held before it stops.
		d.answer(h, fmt.Errorf("%w: the store closed before the update was synced", ErrStorage))
	}
}

// answer resolves a group once its sync's outcome err is known: its
// OnApplied hooks, its events and audit records, and its callers.
func (d *DB) answer(a *applied, err error) {
	if a.b != nil {
		a.b.Close()
		if a.durable != nil {
			a.durable.resolve(err)
		}
		if err == nil {
			d.publish(a.seq, a.head)
		}
	}
	for i, r := range a.group {
		if err != nil {
			a.errs[i] = err
		}
		r.err <- a.errs[i]
	}
}

// failure returns the error of a failed sync, or nil.
func (d *DB) failure() error {
	if e := d.failed.Load(); e != nil {
		return *e
	}
	return nil
}

// publish makes durable events visible to watchers and moves the audit head.
func (d *DB) publish(seq uint64, head audit.Head) {
	d.mu.Lock()
	if seq > d.lastSeq {
		d.lastSeq = seq
		close(d.changed)
		d.changed = make(chan struct{})
	}
	d.mu.Unlock()
	d.setAuditHead(head)
}

// commitGroup runs a group of updates into one batch and applies it. The
// batch is committed with pebble.Sync, but only syncLoop waits for the
// sync: nothing is acknowledged to anyone until it is on disk.
func (d *DB) commitGroup(group []*request) *applied {
	if err := d.failure(); err != nil {
		errs := make([]error, len(group))
		for i := range errs {
			errs[i] = err
		}
		return &applied{group: group, errs: errs}
	}
	b := d.db.NewBatch()
	pending := &groupWrites{}
	// nextSeq and nextHead belong to this goroutine: they count what was
	// applied, a step ahead of what syncLoop published.
	seq := d.nextSeq
	head := d.nextHead
	errs := make([]error, len(group))
	var commitErr error
	var events [][]byte // the group's events, from seq d.nextSeq+1
	var hooks []func(*Durable)
	// A group of deferred updates only asks for no sync of its own.
	unsynced := true
	for _, r := range group {
		unsynced = unsynced && r.deferred
	}
	for i, r := range group {
		tx := &Tx{db: d, group: pending}
		if err := runFn(r.fn, tx); err != nil {
			errs[i] = err
			continue
		}
		// A batch that cannot take a write is broken: fail the whole group
		// rather than commit part of one update.
		if err := d.addToBatch(b, tx, &seq, &events); err != nil {
			commitErr = err
			break
		}
		if err := addAudit(b, d.keys.Load(), tx, &head); err != nil {
			commitErr = err
			break
		}
		pending.ops = append(pending.ops, tx.ops...)
		pending.contexts = append(pending.contexts, tx.contexts...)
		hooks = append(hooks, tx.applied...)
	}
	if commitErr == nil && !b.Empty() {
		var err error
		if unsynced {
			err = d.db.Apply(b, pebble.NoSync)
		} else {
			err = d.db.ApplyNoSyncWait(b, pebble.Sync)
		}
		if err != nil {
			commitErr = fmt.Errorf("%w: commit: %v", ErrStorage, err)
			d.log.Error("store commit failed; the group's updates were not applied", zap.Error(err), zap.Int("updates", len(group)))
		} else {
			d.recent.add(d.nextSeq+1, events)
			d.records.add(pending.ops)
			d.rememberContexts(pending.contexts)
			d.nextSeq, d.nextHead = seq, head
			a := &applied{b: b, group: group, errs: errs, seq: seq, head: head, at: time.Now(), unsynced: unsynced}
			if len(hooks) > 0 {
				a.durable = &Durable{done: make(chan struct{})}
				for _, fn := range hooks {
					d.runHook(fn, a.durable)
				}
			}
			return a
		}
	}
	b.Close()
	if commitErr != nil {
		for i := range errs {
			errs[i] = commitErr
		}
	}
	return &applied{group: group, errs: errs}
}

// addToBatch seals and adds an update's writes to b. Sealing happens here,
// and only here, so that nothing reaches Pebble in clear: the Tx keeps
// plaintext for the reads of later updates of the same group.
func (d *DB) addToBatch(b *pebble.Batch, tx *Tx, seq *uint64, events *[][]byte) error {
	keys := d.keys.Load()
	for _, o := range tx.ops {
		var err error
		switch {
		case o.del:
			err = b.Delete(o.key, nil)
		case sealed(o.key):
			err = setSealed(b, keys, o.key, o.value)
		case len(o.value) != 0:
			// An index value is never sealed, so it must hold nothing.
			return fmt.Errorf("store: value under index key %s would be stored in clear", keyName(o.key))
		default:
			err = b.Set(o.key, nil, nil)
		}
		if err != nil {
			return fmt.Errorf("%w: batch: %v", ErrStorage, err)
		}
	}
	for _, ev := range tx.events {
		*seq++
		ev.Seq = *seq
		v, err := proto.Marshal(ev)
		if err != nil {
			return fmt.Errorf("store: event: %w", err)
		}
		if err := setSealed(b, keys, eventKey(*seq), v); err != nil {
			return fmt.Errorf("%w: batch: %v", ErrStorage, err)
		}
		*events = append(*events, v)
	}
	return nil
}

// setSealed adds key with value sealed under keys' current key to b,
// sealing straight into the batch's buffer.
func setSealed(b *pebble.Batch, keys *datakey.Ring, key, value []byte) error {
	op := b.SetDeferred(len(key), datakey.Overhead+len(value))
	copy(op.Key, key)
	if n := len(keys.AppendSeal(op.Value[:0], value, key)); n != len(op.Value) {
		// The batch now holds a malformed entry: the caller fails the group.
		return fmt.Errorf("store: sealed value of %d bytes, want %d", n, len(op.Value))
	}
	return op.Finish()
}

// runFn runs an update function, turning a panic into an error so that one
// bad update cannot take the commit goroutine (and every writer) down.
func runFn(fn func(*Tx) error, tx *Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("store: update panicked: %v", p)
		}
	}()
	return fn(tx)
}

// runHook runs an OnApplied hook. The group is applied whatever the hook
// does: a panic is logged, not allowed to take the commit goroutine down.
func (d *DB) runHook(fn func(*Durable), dur *Durable) {
	defer func() {
		if p := recover(); p != nil {
			d.log.Error("store: an OnApplied hook panicked", zap.Any("panic", p), zap.Stack("stack"))
		}
	}()
	fn(dur)
}

// LastSeq returns the newest committed event seq and a channel that is
// closed when newer events are committed.
func (d *DB) LastSeq() (uint64, <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lastSeq, d.changed
}

type op struct {
	key   []byte
	value []byte
	del   bool
}

// groupWrites are the writes of the updates of a group that succeeded so
// far, for the updates after them to read.
type groupWrites struct {
	ops []*op
	// contexts are the sealing contexts the group's updates wrote.
	contexts []string
	// byKey indexes ops[:indexed]. It is built on the first read only: many
	// groups have none.
	byKey   map[string]*op
	indexed int
}

// find returns the latest write of key, if any.
func (g *groupWrites) find(key []byte) (*op, bool) {
	if len(g.ops) == 0 {
		return nil, false
	}
	if g.byKey == nil {
		g.byKey = make(map[string]*op, len(g.ops))
	}
	for ; g.indexed < len(g.ops); g.indexed++ {
		o := g.ops[g.indexed]
		g.byKey[string(o.key)] = o
	}
	o, ok := g.byKey[string(key)]
	return o, ok
}

// Tx is the view an update function reads and writes through.
type Tx struct {
	db     *DB
	group  *groupWrites // writes of earlier updates in the same batch
	ops    []*op
	events []*pocnetv1.Event
	// auditRecs are sealed into the chain at commit (audit.go).
	auditRecs []*pocnetv1.AuditRecord
	// applied are the OnApplied hooks.
	applied []func(*Durable)
	// contexts are the sealing contexts this update wrote (PutMessage).
	contexts []string
}

// OnApplied registers fn to run once this update's writes are applied:
// readable by every reader, but not yet durable. d tells when they are, or
// that they may never be (the sync failed). It lets a caller start work
// that must not complete before the update is durable, such as sending an
// envelope ahead to a peer that stores it only once told d succeeded, while
// the sync runs. fn runs in the commit goroutine, serialized with every
// update: it must be quick and must not block. It is not called if the
// update fails or is not applied.
func (t *Tx) OnApplied(fn func(d *Durable)) {
	t.applied = append(t.applied, fn)
}

// find returns this update's latest write of key, if any. An update
// writes a handful of keys: a scan is cheaper than a map.
func (t *Tx) find(key []byte) (*op, bool) {
	for i := len(t.ops) - 1; i >= 0; i-- {
		if bytes.Equal(t.ops[i].key, key) {
			return t.ops[i], true
		}
	}
	return nil, false
}

// get reads key as this update sees it: its own writes, then earlier writes
// of the group, then the database.
func (t *Tx) get(key []byte) ([]byte, bool, error) {
	if o, ok := t.find(key); ok {
		return o.value, !o.del, nil
	}
	if o, ok := t.group.find(key); ok {
		return o.value, !o.del, nil
	}
	v, closer, err := t.db.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("%w: get: %v", ErrStorage, err)
	}
	defer closer.Close()
	if !sealed(key) {
		return nil, true, nil
	}
	out, err := t.db.open(key, v)
	if err != nil {
		return nil, false, err
	}
	return out, true, nil
}

func (t *Tx) set(key, value []byte) {
	t.ops = append(t.ops, &op{key: key, value: value})
}

func (t *Tx) del(key []byte) {
	t.ops = append(t.ops, &op{key: key, del: true})
}

// AppendEvent adds ev to the event log; its seq is assigned at commit.
func (t *Tx) AppendEvent(ev *pocnetv1.Event) {
	t.events = append(t.events, ev)
}

func beUint64(b []byte) uint64 {
	return uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
}

type pebbleLogger struct{ s *zap.SugaredLogger }

func (l pebbleLogger) Infof(format string, args ...any)  { l.s.Debugf(format, args...) }
func (l pebbleLogger) Errorf(format string, args ...any) { l.s.Errorf(format, args...) }
func (l pebbleLogger) Fatalf(format string, args ...any) { l.s.Fatalf(format, args...) }
