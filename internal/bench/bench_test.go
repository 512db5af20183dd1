package bench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/internal/testfed"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

var (
	latencyWarmup = flag.Int("latency.warmup", 200, "messages sent before the latency is measured")
	latencyN      = flag.Int("latency.n", 2000, "messages whose latency is measured, sent one after the other")
	senders       = flag.Int("throughput.senders", 64, "concurrent senders of the throughput benchmarks")
	perSender     = flag.Int("throughput.per-sender", 320, "messages each sender sends in the measured part")
	warmPerSender = flag.Int("throughput.warmup", 10, "messages each sender sends before the measurement")
	rounds        = flag.Int("rounds", 5, "how many times BenchmarkRelay takes the four measurements, in turn")
)

// phaseTimeout bounds the wait for one phase's messages to be seen, so that a
// lost message fails the benchmark instead of hanging it.
const phaseTimeout = 3 * time.Minute

// bodyBytes is the size of every communication body and floor payload.
const bodyBytes = 1024

var body = strings.Repeat("Indicators of the scanning campaign, as observed at the border. ", bodyBytes/32)[:bodyBytes]

// row is what one run of a benchmark measured of one system: a latency run
// fills the first two fields, a throughput run the others.
type row struct {
	p50, p99         time.Duration // one sender
	rate             float64       // messages per second, concurrent senders
	loadP50, loadP99 time.Duration // latency under the concurrent load
	// CPU per message, average busy cores and bytes written to storage per
	// message, for the whole process (clients and both nodes or hops).
	cpuPerMsg  time.Duration
	cores      float64
	diskPerMsg float64
}

var (
	resultsMu sync.Mutex
	// latency and throughput hold every run of this process per system;
	// with -count above 1 the table shows the median of the runs.
	latency    = map[string][]*row{}
	throughput = map[string][]*row{}
)

func record(runs map[string][]*row, system string, r *row) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	runs[system] = append(runs[system], r)
}

// median returns the median of f over rows, and false if there are none.
func median(rows []*row, f func(*row) float64) (float64, bool) {
	if len(rows) == 0 {
		return 0, false
	}
	vs := make([]float64, len(rows))
	for i, r := range rows {
		vs[i] = f(r)
	}
	slices.Sort(vs)
	return vs[len(vs)/2], true
}

func TestMain(m *testing.M) {
	code := m.Run()
	printTable(os.Stdout)
	os.Exit(code)
}

// printTable prints what the benchmarks of this run measured, if any ran.
func printTable(w io.Writer) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	if len(latency) == 0 && len(throughput) == 0 {
		return
	}
	fmt.Fprintf(w, "\ndurable two-node relay, %d-byte communications, mTLS on 127.0.0.1, GOMAXPROCS=%d, NumCPU=%d\n",
		bodyBytes, runtime.GOMAXPROCS(0), runtime.NumCPU())
	fmt.Fprintf(w, "latency: 1 sender, %d messages after %d warm-up; throughput: %d senders x %d messages after %d each warm-up\n",
		*latencyN, *latencyWarmup, *senders, *perSender, *warmPerSender)
	fmt.Fprintf(w, "load p50/p99, cpu (whole process), cores busy and disk writes are of the throughput run; medians of %d run(s)\n\n",
		max(runsOf(latency), runsOf(throughput)))
	fmt.Fprintf(w, "%-8s %8s %8s %9s %12s %12s %12s %7s %13s\n",
		"system", "p50 ms", "p99 ms", "msgs/s", "load p50 ms", "load p99 ms", "cpu us/msg", "cores", "disk KiB/msg")
	p50 := map[string]float64{}
	rate := map[string]float64{}
	for _, name := range []string{"pocnet", "floor"} {
		lat, tp := latency[name], throughput[name]
		if len(lat) == 0 && len(tp) == 0 {
			continue
		}
		col := func(rows []*row, format string, f func(*row) float64) string {
			v, ok := median(rows, f)
			if !ok {
				return "-"
			}
			return fmt.Sprintf(format, v)
		}
		fmt.Fprintf(w, "%-8s %8s %8s %9s %12s %12s %12s %7s %13s\n", name,
			col(lat, "%.2f", func(r *row) float64 { return ms(r.p50) }),
			col(lat, "%.2f", func(r *row) float64 { return ms(r.p99) }),
			col(tp, "%.0f", func(r *row) float64 { return r.rate }),
			col(tp, "%.2f", func(r *row) float64 { return ms(r.loadP50) }),
			col(tp, "%.2f", func(r *row) float64 { return ms(r.loadP99) }),
			col(tp, "%.0f", func(r *row) float64 { return float64(r.cpuPerMsg) / float64(time.Microsecond) }),
			col(tp, "%.2f", func(r *row) float64 { return r.cores }),
			col(tp, "%.1f", func(r *row) float64 { return r.diskPerMsg / 1024 }))
		if v, ok := median(lat, func(r *row) float64 { return ms(r.p50) }); ok {
			p50[name] = v
		}
		if v, ok := median(tp, func(r *row) float64 { return r.rate }); ok {
			rate[name] = v
		}
	}
	fmt.Fprintln(w)
	if p, f := p50["pocnet"], p50["floor"]; p > 0 && f > 0 {
		fmt.Fprintf(w, "pocnet p50 / floor p50         = %5.2f  (target <= 1.5: %s)\n", p/f, verdict(p/f <= 1.5))
	}
	if p, f := rate["pocnet"], rate["floor"]; p > 0 && f > 0 {
		fmt.Fprintf(w, "pocnet msgs/s / floor msgs/s   = %5.2f  (target >= 1.0: %s)\n", p/f, verdict(p/f >= 1.0))
	}
}

func runsOf(runs map[string][]*row) int {
	n := 0
	for _, rs := range runs {
		n = max(n, len(rs))
	}
	return n
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// usage is what the whole process (clients and both nodes or hops) has
// consumed so far in CPU time, and what the store's device has written.
type usage struct {
	cpu        time.Duration
	diskBytes  int64
	haveDiskIO bool
}

func readUsage() usage {
	var u usage
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		u.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	u.diskBytes, u.haveDiskIO = deviceWrites()
	return u
}

// deviceWrites returns the bytes written so far to the block device that
// holds the temporary directory, where both systems keep their stores: what
// the device itself counts (sectors written), WAL, flushes, compactions and
// the file system's journal, of every process on the machine. Linux only.
//
// The process's own write_bytes (/proc/self/io) is no measure of this: it
// counts a page each time a write dirties it, and an fdatasync of a log
// written over blocks already on disk was seen to add about 2 MB to it per
// call while the device wrote 5 KiB.
func deviceWrites() (int64, bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(os.TempDir(), &st); err != nil {
		return 0, false
	}
	dev := uint64(st.Dev)
	major := (dev>>8)&0xfff | (dev>>32)&^0xfff
	minor := dev&0xff | (dev>>12)&^0xff
	b, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/stat", major, minor))
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) < 7 {
		return 0, false
	}
	sectors, err := strconv.ParseInt(f[6], 10, 64)
	if err != nil {
		return 0, false
	}
	return sectors * 512, true
}

// reportUsage reports the CPU and disk cost per message between from and
// now, and how many cores were busy on average over elapsed.
func reportUsage(b *testing.B, r *row, from usage, n int, elapsed time.Duration) {
	to := readUsage()
	cpu := to.cpu - from.cpu
	r.cpuPerMsg = cpu / time.Duration(n)
	r.cores = cpu.Seconds() / elapsed.Seconds()
	b.ReportMetric(float64(r.cpuPerMsg)/float64(time.Microsecond), "cpu-us/msg")
	b.ReportMetric(r.cores, "cores")
	if from.haveDiskIO && to.haveDiskIO {
		r.diskPerMsg = float64(to.diskBytes-from.diskBytes) / float64(n)
		b.ReportMetric(r.diskPerMsg/1024, "disk-KiB/msg")
	}
}

// sendFunc sends one 1 KiB message and returns its id.
type sendFunc func(ctx context.Context, seq int) (string, error)

// system is what a benchmark drives: a way to get senders, each on its own
// connection, and the watcher's stream of received message ids.
type system struct {
	name      string
	newSender func() sendFunc
	// watch opens the watcher's stream; it is ready when watch returns.
	watch func(ctx context.Context) (recv func() (*pocnetv1.Event, error), err error)
}

func pocnet(b *testing.B) *system {
	f := testfed.Start(b, testfed.Options{Quiet: true})
	return &system{
		name: "pocnet",
		newSender: func() sendFunc {
			c := f.Contact("XAA", "technical")
			return func(ctx context.Context, seq int) (string, error) {
				resp, err := c.SendCommunication(ctx, &pocnetv1.SendCommunicationRequest{
					ToState: "XBB", ToRole: "technical",
					Communication: &pocnetv1.Communication{
						Kind: pocnetv1.Kind_KIND_REQUEST_FOR_INFORMATION, Urgency: pocnetv1.Urgency_URGENCY_PRIORITY,
						Subject: fmt.Sprintf("Scanning campaign, report %d", seq), Body: body, Language: "en",
					},
					// The sender keeps what it sent; the watcher below gets
					// every message whole.
					View: pocnetv1.MessageView_MESSAGE_VIEW_BASIC,
				})
				if err != nil {
					return "", err
				}
				if st := resp.GetMessage().GetStatus(); st != pocnetv1.Status_STATUS_ACCEPTED {
					return "", fmt.Errorf("send: status %v, want ACCEPTED", st)
				}
				return resp.GetMessage().GetId(), nil
			}
		},
		watch: func(ctx context.Context) (func() (*pocnetv1.Event, error), error) {
			stream, err := f.Contact("XBB", "technical").WatchEvents(ctx, &pocnetv1.WatchEventsRequest{})
			if err != nil {
				return nil, err
			}
			// The stream replays from the first event: nothing can be missed.
			return func() (*pocnetv1.Event, error) {
				r, err := stream.Recv()
				return r.GetEvent(), err
			}, nil
		},
	}
}

func floor(b *testing.B) *system {
	fl, err := StartFloor(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(fl.Close)
	first, last := fl.States()
	payload := []byte(body)
	return &system{
		name: "floor",
		newSender: func() sendFunc {
			cc, err := fl.Dial(first, "technical")
			if err != nil {
				b.Fatal(err)
			}
			c := pocnetv1.NewRelayServiceClient(cc)
			return func(ctx context.Context, _ int) (string, error) {
				id, err := uuid.NewV7()
				if err != nil {
					return "", err
				}
				h, err := proto.Marshal(&pocnetv1.EnvelopeHeader{Id: id.String()})
				if err != nil {
					return "", err
				}
				resp, err := c.Deliver(ctx, &pocnetv1.DeliverRequest{Envelopes: []*pocnetv1.Envelope{{Header: h, Payload: payload}}})
				if err != nil {
					return "", err
				}
				if n := len(resp.GetResults()); n != 1 {
					return "", fmt.Errorf("deliver: %d results, want 1", n)
				}
				return id.String(), nil
			}
		},
		watch: func(ctx context.Context) (func() (*pocnetv1.Event, error), error) {
			cc, err := fl.Dial(last, "technical")
			if err != nil {
				return nil, err
			}
			stream, err := pocnetv1.NewContactServiceClient(cc).WatchEvents(ctx, &pocnetv1.WatchEventsRequest{})
			if err != nil {
				return nil, err
			}
			// The hop sends headers once the watcher is registered.
			if _, err := stream.Header(); err != nil {
				return nil, err
			}
			return func() (*pocnetv1.Event, error) {
				r, err := stream.Recv()
				return r.GetEvent(), err
			}, nil
		},
	}
}

// arrival is what the tracker knows of one message.
type arrival struct {
	seen chan struct{} // closed when the watcher saw the message
	at   time.Time     // when the watcher saw it
}

// tracker matches the watcher's events with the senders' message ids. The
// watcher may see a message before its sender learns the id (the floor
// announces before it answers), so whichever comes first makes the entry.
type tracker struct {
	mu      sync.Mutex
	byID    map[string]*arrival
	count   int
	target  int
	reached chan struct{}
	last    time.Time // when count reached target
}

func newTracker() *tracker { return &tracker{byID: map[string]*arrival{}} }

func (t *tracker) entry(id string) *arrival {
	a, ok := t.byID[id]
	if !ok {
		a = &arrival{seen: make(chan struct{})}
		t.byID[id] = a
	}
	return a
}

// arrived records that the watcher saw id at time at.
func (t *tracker) arrived(id string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.entry(id)
	select {
	case <-a.seen:
		return // an event seen twice counts once
	default:
	}
	a.at = at
	close(a.seen)
	t.count++
	if t.reached != nil && t.count == t.target {
		t.last = at
		close(t.reached)
	}
}

// expect returns a channel closed when n more messages have been seen.
func (t *tracker) expect(n int) <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.target = t.count + n
	t.reached = make(chan struct{})
	return t.reached
}

// wait returns when the watcher saw id and forgets id.
func (t *tracker) wait(ctx context.Context, id string) (time.Time, error) {
	t.mu.Lock()
	a := t.entry(id)
	t.mu.Unlock()
	select {
	case <-a.seen:
	case <-ctx.Done():
		return time.Time{}, fmt.Errorf("message %s not seen by the watcher: %w", id, ctx.Err())
	}
	t.mu.Lock()
	delete(t.byID, id)
	t.mu.Unlock()
	return a.at, nil
}

// watch starts the watcher and feeds the tracker until the benchmark ends.
func watch(b *testing.B, s *system) *tracker {
	ctx, cancel := context.WithCancel(context.Background())
	recv, err := s.watch(ctx)
	if err != nil {
		cancel()
		b.Fatalf("%s: watch: %v", s.name, err)
	}
	t := newTracker()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			ev, err := recv()
			if err != nil {
				return
			}
			if ev.GetType() == pocnetv1.EventType_EVENT_TYPE_MESSAGE_RECEIVED {
				t.arrived(ev.GetMessageId(), time.Now())
			}
		}
	}()
	b.Cleanup(func() {
		cancel()
		<-done
	})
	return t
}

// percentile returns the q-quantile of sorted durations.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)))
	return sorted[min(i, len(sorted)-1)]
}

// runLatency sends one message at a time and measures from just before the
// send to the watcher seeing it.
func runLatency(b *testing.B, s *system) {
	t := watch(b, s)
	send := s.newSender()
	lat := make([]time.Duration, 0, *latencyN)
	for i := range *latencyWarmup + *latencyN {
		ctx, cancel := context.WithTimeout(context.Background(), phaseTimeout)
		start := time.Now()
		id, err := send(ctx, i)
		if err != nil {
			cancel()
			b.Fatalf("%s: send %d: %v", s.name, i, err)
		}
		at, err := t.wait(ctx, id)
		cancel()
		if err != nil {
			b.Fatalf("%s: %v", s.name, err)
		}
		if i >= *latencyWarmup {
			lat = append(lat, at.Sub(start))
		}
	}
	slices.Sort(lat)
	r := &row{p50: percentile(lat, 0.50), p99: percentile(lat, 0.99)}
	record(latency, s.name, r)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(ms(r.p50), "p50-ms")
	b.ReportMetric(ms(r.p99), "p99-ms")
	b.ReportMetric(float64(len(lat))/ms(sum(lat))*1000, "msgs/s")
}

func sum(ds []time.Duration) time.Duration {
	var t time.Duration
	for _, d := range ds {
		t += d
	}
	return t
}

// runThroughput runs concurrent senders, each sending one message after the
// other without waiting for delivery, and measures from the first send to
// the watcher seeing the last message.
func runThroughput(b *testing.B, s *system) {
	t := watch(b, s)
	sendFns := make([]sendFunc, *senders)
	for i := range sendFns {
		sendFns[i] = s.newSender()
	}
	type sent struct {
		id    string
		start time.Time
	}
	// burst makes every sender send per messages and returns what was sent.
	burst := func(per int) [][]sent {
		out := make([][]sent, len(sendFns))
		errs := make(chan error, len(sendFns))
		var wg sync.WaitGroup
		for i, send := range sendFns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), phaseTimeout)
				defer cancel()
				for j := range per {
					start := time.Now()
					id, err := send(ctx, i*per+j)
					if err != nil {
						errs <- fmt.Errorf("sender %d, message %d: %w", i, j, err)
						return
					}
					out[i] = append(out[i], sent{id, start})
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			b.Fatalf("%s: %v", s.name, err)
		}
		return out
	}
	seen := func(reached <-chan struct{}, what string) {
		select {
		case <-reached:
		case <-time.After(phaseTimeout):
			b.Fatalf("%s: the watcher did not see every message of the %s", s.name, what)
		}
	}

	// The warm-up opens every connection and fills the caches.
	reached := t.expect(*senders * *warmPerSender)
	burst(*warmPerSender)
	seen(reached, "warm-up")

	n := *senders * *perSender
	reached = t.expect(n)
	before := readUsage()
	start := time.Now()
	all := burst(*perSender)
	seen(reached, "measurement")
	elapsed := t.last.Sub(start)
	r := &row{}
	reportUsage(b, r, before, n, elapsed)

	lat := make([]time.Duration, 0, n)
	for _, msgs := range all {
		for _, m := range msgs {
			at, err := t.wait(context.Background(), m.id)
			if err != nil {
				b.Fatal(err)
			}
			lat = append(lat, at.Sub(m.start))
		}
	}
	slices.Sort(lat)
	r.rate = float64(n) / elapsed.Seconds()
	r.loadP50, r.loadP99 = percentile(lat, 0.50), percentile(lat, 0.99)
	record(throughput, s.name, r)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(ms(r.loadP50), "p50-ms")
	b.ReportMetric(ms(r.loadP99), "p99-ms")
	b.ReportMetric(r.rate, "msgs/s")
}

// The benchmarks below measure a fixed number of messages each time they
// run, whatever b.N is; run them with -benchtime 1x.

// BenchmarkRelay takes the four measurements below in turn, -rounds times,
// each on a new federation or floor. Alternating spreads a drift of the
// machine over both systems alike: the latency of a synced write on the
// same disk was seen to change by tens of percent from one minute to the
// next, which one run after the other would charge to one system. The
// table then shows the median of the rounds (make bench).
func BenchmarkRelay(b *testing.B) {
	for r := range *rounds {
		b.Run(fmt.Sprintf("round%d/PocnetLatency", r+1), BenchmarkPocnetLatency)
		b.Run(fmt.Sprintf("round%d/FloorLatency", r+1), BenchmarkFloorLatency)
		b.Run(fmt.Sprintf("round%d/PocnetThroughput", r+1), BenchmarkPocnetThroughput)
		b.Run(fmt.Sprintf("round%d/FloorThroughput", r+1), BenchmarkFloorThroughput)
	}
}

func BenchmarkPocnetLatency(b *testing.B)    { runLatency(b, pocnet(b)) }
func BenchmarkFloorLatency(b *testing.B)     { runLatency(b, floor(b)) }
func BenchmarkPocnetThroughput(b *testing.B) { runThroughput(b, pocnet(b)) }
func BenchmarkFloorThroughput(b *testing.B)  { runThroughput(b, floor(b)) }
