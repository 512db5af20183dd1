package store

import (
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Every acknowledgement waits for an fdatasync of Pebble's write-ahead log.
// When that write lies beyond the end of the file, the file grows, and
// fdatasync must also commit the new size through the file system's journal:
// on ext4 here an fdatasync after 4.8 KiB of random data took 170-200 µs
// appended against 95-133 µs written over bytes already on disk
// (BenchmarkLoneUpdate: a lone update's median 202 µs against 128-136 µs). Pebble avoids this by
// recycling old log files, but only once a memtable has been flushed: a
// node's first log after each start, which on a quiet node is its only one
// for days, grows with every write.
//
// walFillFS makes every new log file start out already on disk: it writes
// zeros ahead of what Pebble writes, synced, so that Pebble's own writes
// overwrite blocks the file already has. What lies after the last record
// is what Pebble's reader already meets in a recycled log, where it is
// stale records instead of zeros: a log Pebble closed ends with an EOF
// trailer, written and synced before the next log is created, and the
// reader stops there; the newest log, cut short by a crash, ends where the
// records stop making sense, which Pebble accepts of the newest log only.
// TestZeroFilledLogRecovers opens a copy of a running store.

// zeros is one piece of a fill (zeroFill).
var zeros = make([]byte, 256<<10)

// walFillFS wraps fs so that the log files Pebble creates or recycles are
// zero-filled ahead of its writes.
type walFillFS struct {
	vfs.FS
	fill fillSizes
}

// fillSizes are how much is zeroed and when.
type fillSizes struct {
	// first is zeroed when a log is created, before Pebble writes to it;
	// Pebble creates logs on its commit path, so it is kept small. The
	// background fill starts with Pebble's first write.
	first int64
	// chunk is zeroed at a time, in the background, whenever fewer than
	// ahead zeroed bytes are left ahead of Pebble's writes.
	chunk, ahead int64
}

// The background fill must outpace Pebble's writes: a crisis burst writes a
// few MiB a second to a node's log, and the fill zeroes and syncs a
// 256 KiB piece in about 0.4 ms here (4 MiB in 6-8 ms).
var defaultFill = fillSizes{first: 256 << 10, chunk: 4 << 20, ahead: 2 << 20}

func (fs walFillFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	if err != nil || !isLog(fs, name) {
		return f, err
	}
	// The first stretch is zeroed before Pebble's first write.
	if err := zeroFill(f, 0, fs.fill.first); err != nil {
		return f, nil
	}
	return newFillAhead(f, fs.fill, fs.fill.first), nil
}

func (fs walFillFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	if err != nil || !isLog(fs, newname) {
		return f, err
	}
	// A recycled log is already on disk up to its old size.
	st, err := f.Stat()
	if err != nil {
		return f, nil
	}
	return newFillAhead(f, fs.fill, st.Size()), nil
}

func (fs walFillFS) Unwrap() vfs.FS { return fs.FS }

// isLog reports whether name is one of Pebble's write-ahead logs (NNNNNN.log).
func isLog(fs vfs.FS, name string) bool {
	base := fs.PathBase(name)
	return len(base) > 4 && base[len(base)-4:] == ".log"
}

// fillAhead is a log file being zero-filled ahead of Pebble's writes. Pebble
// writes it sequentially from offset 0 (Write); the fill writes zeros at
// offsets beyond (WriteAt). A Write that would reach into a region being
// filled waits for the fill, so that zeros never land on a record.
type fillAhead struct {
	vfs.File
	sizes fillSizes

	mu      sync.Mutex
	cond    sync.Cond
	written int64 // end of Pebble's writes, including one under way
	ready   int64 // [0, ready) is on disk: records, or zeros synced
	filling bool  // zeros are being written from fillFrom on
	// fillFrom is where the fill under way starts.
	fillFrom int64
	stopped  bool // closed, or a write failed: no more filling
}

func newFillAhead(f vfs.File, sizes fillSizes, ready int64) *fillAhead {
	z := &fillAhead{File: f, sizes: sizes, ready: ready}
	z.cond.L = &z.mu
	return z
}

func (z *fillAhead) Write(p []byte) (int, error) {
	z.mu.Lock()
	end := z.written + int64(len(p))
	for z.filling && end > z.fillFrom {
		z.cond.Wait()
	}
	z.written = end
	if !z.filling && !z.stopped && z.ready-end < z.sizes.ahead {
		z.startFill(max(z.ready, end), z.sizes.chunk)
	}
	z.mu.Unlock()
	n, err := z.File.Write(p)
	if err != nil {
		// Where the file's offset now is, is not known: fill no more.
		z.mu.Lock()
		z.stopped = true
		z.mu.Unlock()
	}
	return n, err
}

// startFill zeroes [from, from+n) in the background. z.mu is held.
func (z *fillAhead) startFill(from, n int64) {
	z.filling, z.fillFrom = true, from
	go func() {
		err := zeroFill(z.File, from, n)
		z.mu.Lock()
		z.filling = false
		if err != nil {
			// Pebble's writes go on as they would without the fill; they
			// only pay for growing the file again.
			z.stopped = true
		} else {
			z.ready = from + n
		}
		z.cond.Broadcast()
		z.mu.Unlock()
	}()
}

// zeroFill writes n zeros into f from offset from, and syncs them, a piece
// at a time: a piece of zeros written but not yet synced is written back by
// whichever fdatasync comes first, Pebble's own included, so pieces are
// kept small enough not to hold a commit up for long.
func zeroFill(f vfs.File, from, n int64) error {
	for off := from; off < from+n; off += int64(len(zeros)) {
		if _, err := f.WriteAt(zeros[:min(int64(len(zeros)), from+n-off)], off); err != nil {
			return err
		}
		if err := f.SyncData(); err != nil {
			return err
		}
	}
	return nil
}

func (z *fillAhead) Close() error {
	z.mu.Lock()
	z.stopped = true
	for z.filling {
		z.cond.Wait()
	}
	z.mu.Unlock()
	return z.File.Close()
}
