package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	pebblerecord "github.com/cockroachdb/pebble/v2/record"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Pebble's writes to a log being zero-filled ahead of them land intact,
// whatever their sizes against the fill's: no zero overwrites a record, and
// what lies beyond the last write is zeros only.
func TestFillAheadKeepsEveryWrite(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sizes fillSizes
		reuse int64 // size of the recycled log, 0 for a new one
	}{
		{"new log, tiny chunks", fillSizes{first: 100, chunk: 300, ahead: 200}, 0},
		{"new log, writes larger than chunks", fillSizes{first: 10, chunk: 64, ahead: 32}, 0},
		{"new log, default sizes", defaultFill, 0},
		{"recycled log", fillSizes{first: 100, chunk: 300, ahead: 200}, 5000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			fs := walFillFS{FS: vfs.Default, fill: tc.sizes}
			name := filepath.Join(dir, "000001.log")
			var f vfs.File
			var err error
			if tc.reuse > 0 {
				// The old log holds non-zero bytes: already on disk, they
				// are not zeroed again, only overwritten by the writes.
				old := filepath.Join(dir, "000000.log")
				if err := os.WriteFile(old, bytes.Repeat([]byte{0xee}, int(tc.reuse)), 0o600); err != nil {
					t.Fatal(err)
				}
				f, err = fs.ReuseForWrite(old, name, "test")
			} else {
				f, err = fs.Create(name, "test")
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := f.(*fillAhead); !ok {
				t.Fatalf("a log file is a %T, want *fillAhead", f)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			var want []byte
			for i := 0; len(want) < int(max(3*tc.sizes.chunk, 3000, tc.reuse+1000)); i++ {
				p := make([]byte, 1+rng.IntN(int(min(tc.sizes.chunk, 4096))))
				for j := range p {
					p[j] = byte(1 + (i+j)%255) // never zero
				}
				if n, err := f.Write(p); err != nil || n != len(p) {
					t.Fatalf("write %d: %d, %v", i, n, err)
				}
				want = append(want, p...)
				if tc.reuse > 0 && len(want) < 1000 {
					// Far from the old end: nothing was zeroed yet.
					got, err := os.ReadFile(name)
					if err != nil {
						t.Fatal(err)
					}
					if len(got) != int(tc.reuse) || bytes.ContainsRune(got[len(want):], 0) {
						t.Fatalf("after %d bytes written, the recycled log of %d bytes has %d, with zeros past the writes: %v", len(want), tc.reuse, len(got), bytes.ContainsRune(got[len(want):], 0))
					}
				}
				if i%7 == 0 {
					if err := f.SyncData(); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) < len(want) {
				t.Fatalf("file has %d bytes, %d were written", len(got), len(want))
			}
			if i := firstDiff(got[:len(want)], want); i >= 0 {
				t.Fatalf("byte %d of %d written is %#x, want %#x", i, len(want), got[i], want[i])
			}
			tail := got[len(want):]
			if tc.reuse > int64(len(want)) {
				t.Fatalf("test wrote %d bytes, fewer than the recycled log's %d", len(want), tc.reuse)
			}
			if i := bytes.IndexFunc(tail, func(r rune) bool { return r != 0 }); i >= 0 {
				t.Fatalf("byte %d after the last write is not zero", len(want)+i)
			}
			// The fill kept ahead: the file reaches past the last write.
			if len(tail) == 0 {
				t.Fatalf("no zeros ahead of the last write (file of %d bytes)", len(got))
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// Only Pebble's logs are zero-filled: tables, the manifest and the rest are
// written as they are.
func TestFillOnlyLogs(t *testing.T) {
	dir := t.TempDir()
	fs := walFillFS{FS: vfs.Default, fill: defaultFill}
	for name, want := range map[string]bool{"000004.log": true, "000005.sst": false, "MANIFEST-000001": false, "OPTIONS-000003": false} {
		f, err := fs.Create(filepath.Join(dir, name), "test")
		if err != nil {
			t.Fatal(err)
		}
		_, got := f.(*fillAhead)
		st, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		if got != want || (st.Size() > 0) != want {
			t.Errorf("%s: zero-filled %v (size %d), want %v", name, got, st.Size(), want)
		}
		f.Close()
	}
}

// A store's log really is zero-filled on disk, and a copy of the store taken
// while it runs, as a crash would leave it (every acknowledged update synced,
// then zeros), opens with every acknowledged update.
func TestZeroFilledLogRecovers(t *testing.T) {
	dir := t.TempDir()
	d, err := Open(dir, Options{Keys: testKeys})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	const n = 300
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := []byte(fmt.Sprintf("%c%05d", nsMessage, i))
			if err := d.Update(context.Background(), func(tx *Tx) error {
				tx.set(k, bytes.Repeat([]byte{byte(i)}, 3000))
				return nil
			}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// Every log holds records, then zeros: what was written lies in blocks
	// the file already had. Pebble's reader ends every log it closed at its
	// EOF trailer, before the zeros, and the newest, still open, where the
	// records stop: what it accepts of the newest log only.
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var logs []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".log") {
			logs = append(logs, e.Name())
		}
	}
	slices.Sort(logs)
	if len(logs) == 0 {
		t.Fatal("no log in the store")
	}
	var bytesOfRecords, replayed int
	for i, name := range logs {
		content, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		end := len(bytes.TrimRight(content, "\x00"))
		if end == len(content) {
			t.Errorf("log %s: %d bytes of records and no zeros after them", name, end)
		}
		bytesOfRecords += end
		read, last := readLog(t, filepath.Join(dir, name))
		replayed += read
		newest := i == len(logs)-1
		if !newest && !errors.Is(last, io.EOF) {
			t.Errorf("closed log %s (%d bytes read): read ended with %v, want its EOF trailer", name, read, last)
		}
		if newest && !errors.Is(last, pebblerecord.ErrUnexpectedEOF) && !errors.Is(last, io.EOF) {
			t.Errorf("newest log %s (%d bytes read): read ended with %v", name, read, last)
		}
	}
	// Each update's value is sealed, so the groups' batches hold more.
	if bytesOfRecords < n*3000 || replayed < n*3000 {
		t.Fatalf("%d logs: %d bytes before the zeros, %d bytes of records read back; want at least %d", len(logs), bytesOfRecords, replayed, n*3000)
	}

	crashed := t.TempDir()
	if err := copyDir(dir, crashed); err != nil {
		t.Fatal(err)
	}
	c, err := Open(crashed, Options{Keys: testKeys})
	if err != nil {
		t.Fatalf("open a copy of the running store: %v", err)
	}
	defer c.Close()
	for i := range n {
		k := []byte(fmt.Sprintf("%c%05d", nsMessage, i))
		v, closer, err := c.db.Get(k)
		if err != nil {
			t.Fatalf("update %d lost: %v", i, err)
		}
		p, err := c.open(k, v)
		closer.Close()
		if err != nil || !bytes.Equal(p, bytes.Repeat([]byte{byte(i)}, 3000)) {
			t.Fatalf("update %d: %d bytes, %v", i, len(p), err)
		}
	}
}

// readLog reads the Pebble log at path record by record, as Pebble replays
// it, and returns how many bytes of records it read and the error that
// ended it.
func readLog(t *testing.T, path string) (int, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var num uint64
	if _, err := fmt.Sscanf(filepath.Base(path), "%d.log", &num); err != nil {
		t.Fatalf("log name %s: %v", path, err)
	}
	// NewReader takes the log number as a type of Pebble's internal
	// package, which cannot be named here.
	newReader := reflect.ValueOf(pebblerecord.NewReader)
	r := newReader.Call([]reflect.Value{reflect.ValueOf(f), reflect.ValueOf(num).Convert(newReader.Type().In(1))})[0].Interface().(*pebblerecord.Reader)
	read := 0
	for {
		rr, err := r.Next()
		if err == nil {
			var n int64
			n, err = io.Copy(io.Discard, rr)
			read += int(n)
		}
		if err != nil {
			return read, err
		}
	}
}

func copyDir(from, to string) error {
	ents, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() || e.Name() == "LOCK" {
			continue
		}
		src, err := os.Open(filepath.Join(from, e.Name()))
		if err != nil {
			return err
		}
		dst, err := os.Create(filepath.Join(to, e.Name()))
		if err == nil {
			_, err = io.Copy(dst, src)
			err = errors.Join(err, dst.Close())
		}
		src.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkLoneUpdate is one writer committing updates of about a message's
// size (4.5 KiB, incompressible) one after the other, each synced before
// the next: the store's share of one sender's latency, with the log
// zero-filled ahead of its writes and with the log growing as Pebble writes
// it. Besides the mean (ns/op) it reports the median and the tail.
func BenchmarkLoneUpdate(b *testing.B) {
	for _, bc := range []struct {
		name string
		grow bool
	}{{"zero-filled", false}, {"growing", true}} {
		b.Run(bc.name, func(b *testing.B) {
			d, err := Open(b.TempDir(), Options{Keys: testKeys, growLog: bc.grow})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			// Ciphertext, as every stored value is: data the device
			// cannot shortcut the way it can zeros.
			v := make([]byte, 4500)
			rng := rand.New(rand.NewPCG(3, 4))
			for i := range v {
				v[i] = byte(rng.Uint32())
			}
			var took []time.Duration
			i := 0
			for b.Loop() {
				i++
				k := []byte(fmt.Sprintf("%c%08d", nsMessage, i))
				start := time.Now()
				if err := d.Update(context.Background(), func(tx *Tx) error { tx.set(k, v); return nil }); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
			}
			slices.Sort(took)
			for _, q := range []struct {
				name string
				at   float64
			}{{"p50-us", 0.5}, {"p99-us", 0.99}, {"p99.9-us", 0.999}} {
				b.ReportMetric(float64(took[int(q.at*float64(len(took)-1))].Microseconds()), q.name)
			}
		})
	}
}
