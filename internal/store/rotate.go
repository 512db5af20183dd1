package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"

	"github.com/pocnet/pocnet/internal/datakey"
)

// Data key rotation, without stopping the node:
//
//  1. add a key to the key file (datakey.Add), which becomes current;
//  2. load the file and SetKeys: new values are sealed under the new key,
//     old ones still open under theirs;
//  3. run Rewrap in the background: it reseals every value still under an
//     old key, in small updates through the commit goroutine;
//  4. when KeyUsage reports no value under the old key, delete its line
//     from the key file and SetKeys again (or just restart later).
//
// Pebble may keep superseded copies of rewrapped values in older sstables
// and WAL files until compactions rewrite them. They are ciphertext under
// the old key, unreachable through the store, and nothing reads them: the
// old key is not needed for them, and once it is deleted they can never be
// decrypted again, which is what retiring a key is for.

const (
	// rewrapBatch bounds the values one rewrap update reseals, so that it
	// holds the commit goroutine only briefly and concurrent writers keep
	// their latency.
	rewrapBatch = 256
	// rewrapScan bounds the entries one scan step reads before handing what
	// it found to an update, so that no iterator stays open for long.
	rewrapScan = 4096
)

// Keys returns the key ring the store seals and opens with.
func (d *DB) Keys() *datakey.Ring { return d.keys.Load() }

// SetKeys makes r the store's key ring: values written from now on are
// sealed under r's current key. It refuses a ring that would leave values
// unreadable: r must hold the key that is current now (values are being
// sealed under it until the swap) and every key KeyUsage reports. To retire
// a key, Rewrap first.
func (d *DB) SetKeys(r *datakey.Ring) error {
	if r == nil {
		return errors.New("store: SetKeys: no key ring")
	}
	// One SetKeys at a time, so that no value is sealed, between the check
	// and the swap, under a key the new ring lacks.
	d.setKeys.Lock()
	defer d.setKeys.Unlock()
	if cur := d.keys.Load().Current(); !r.Has(cur) {
		return fmt.Errorf("store: SetKeys: the new key ring lacks data key %s, which seals values now; keep it until Rewrap has moved them", cur)
	}
	// Values under keys other than the current one only move to the current
	// key (Rewrap) while this runs, so counting first is sound.
	usage, err := d.KeyUsage()
	if err != nil {
		return err
	}
	for _, id := range slices.SortedFunc(maps.Keys(usage), compareIDs) {
		if !r.Has(id) {
			return fmt.Errorf("store: SetKeys: %d values are sealed under data key %s, which the new key ring lacks; Rewrap first", usage[id], id)
		}
	}
	d.keys.Store(r)
	d.log.Info("data key ring replaced", zap.Stringer("keys", r))
	return nil
}

// KeyUsage counts the values sealed under each data key, including keys the
// ring no longer holds. A key absent from the result seals nothing: it can
// be deleted from the key file.
func (d *DB) KeyUsage() (map[datakey.ID]int, error) {
	it, err := d.db.NewIter(nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStorage, err)
	}
	defer it.Close()
	usage := map[datakey.ID]int{}
	for ok := it.First(); ok; {
		k := it.Key()
		if !sealed(k) {
			// Skip the whole index namespace: it holds only empty values.
			ok = it.SeekGE([]byte{k[0] + 1})
			continue
		}
		id, err := datakey.SealedBy(it.Value())
		if err != nil {
			return nil, fmt.Errorf("%w: value of key %s: %w", ErrStorage, keyName(k), err)
		}
		usage[id]++
		ok = it.Next()
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStorage, err)
	}
	return usage, nil
}

// Rewrap reseals every value not sealed under the current key, and returns
// how many it resealed. It is meant to run in the background after SetKeys:
// it works in bounded updates through the commit goroutine (see Update),
// each rereading what it reseals, so it never races with concurrent writes
// and delays them only briefly. It repeats until a full pass finds nothing
// to do, so values sealed under a key that was current when the pass began
// are resealed too. ctx stops it between updates; what it resealed stays
// resealed, and running it again continues the work.
func (d *DB) Rewrap(ctx context.Context) (int, error) {
	total := 0
	for {
		n, err := d.rewrapPass(ctx)
		total += n
		if err != nil {
			d.log.Warn("rewrap stopped; running it again continues", zap.Int("values", total), zap.Error(err))
			return total, err
		}
		if n == 0 {
			d.log.Info("every value is sealed under the current data key", zap.Int("resealed", total),
				zap.Stringer("current", d.keys.Load().Current()))
			return total, nil
		}
	}
}

func (d *DB) rewrapPass(ctx context.Context) (int, error) {
	total := 0
	var from []byte
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		stale, next, err := d.findStale(from, d.keys.Load().Current())
		if err != nil {
			return total, err
		}
		if len(stale) > 0 {
			n := 0
			err := d.Update(ctx, func(tx *Tx) error {
				n = 0
				for _, k := range stale {
					done, err := tx.reseal(k)
					if err != nil {
						return err
					}
					if done {
						n++
					}
				}
				return nil
			})
			if err != nil {
				return total, err
			}
			total += n
		}
		if next == nil {
			return total, nil
		}
		from = next
	}
}

// findStale scans from the key from (nil: the start) and returns up to
// rewrapBatch keys whose values are sealed under a key other than current,
// and the key to continue from (nil at the end).
func (d *DB) findStale(from []byte, current datakey.ID) (stale [][]byte, next []byte, err error) {
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: from})
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrStorage, err)
	}
	defer it.Close()
	scanned := 0
	for ok := it.First(); ok; {
		k := it.Key()
		if !sealed(k) {
			ok = it.SeekGE([]byte{k[0] + 1})
			continue
		}
		id, err := datakey.SealedBy(it.Value())
		if err != nil {
			return nil, nil, fmt.Errorf("%w: value of key %s: %w", ErrStorage, keyName(k), err)
		}
		if id != current {
			stale = append(stale, append([]byte(nil), k...))
		}
		if scanned++; len(stale) == rewrapBatch || scanned == rewrapScan {
			// The smallest key after k.
			return stale, append(append([]byte(nil), k...), 0), nil
		}
		ok = it.Next()
	}
	if err := it.Error(); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrStorage, err)
	}
	return stale, nil, nil
}

// reseal rewrites the value under key if it is still sealed under a key
// other than the current one; addToBatch seals it under the current key.
// It reports whether it rewrote anything.
func (t *Tx) reseal(key []byte) (bool, error) {
	// A write of this batch is sealed under the current key when the batch
	// is committed: nothing to do.
	if _, ok := t.find(key); ok {
		return false, nil
	}
	if _, ok := t.group.find(key); ok {
		return false, nil
	}
	v, closer, err := t.db.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil // deleted since the scan
	}
	if err != nil {
		return false, fmt.Errorf("%w: get: %v", ErrStorage, err)
	}
	defer closer.Close()
	keys := t.db.keys.Load()
	if id, err := datakey.SealedBy(v); err == nil && id == keys.Current() {
		return false, nil // rewritten since the scan
	}
	p, err := t.db.open(key, v)
	if err != nil {
		return false, err
	}
	t.set(key, p)
	return true, nil
}

func compareIDs(a, b datakey.ID) int { return slices.Compare(a[:], b[:]) }
