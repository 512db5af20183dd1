package governance

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// ForkError reports two different valid versions with the same parent: the
// one the chain holds and the one it refused. The chain never chooses
// between them; people do.
type ForkError struct {
	// Version is the number both versions carry.
	Version uint64
	// Parent is the hash of their common parent.
	Parent [sha256.Size]byte
	// Have is the hash of the version in the chain.
	Have [sha256.Size]byte
	// Got is the hash of the refused version.
	Got [sha256.Size]byte
	// Equivocators are the states that signed both versions, sorted. Two
	// states each changing their own entry at once make a fork with none;
	// a state signing two conflicting versions is named here.
	Equivocators []string
}

// Error names the fork.
func (e *ForkError) Error() string {
	msg := fmt.Sprintf("fork at version %d (parent %s): have %s, refused %s", e.Version, short(e.Parent[:]), short(e.Have[:]), short(e.Got[:]))
	if len(e.Equivocators) > 0 {
		msg += "; signed both: " + strings.Join(e.Equivocators, ", ")
	}
	return msg
}

// Chain is a directory's version chain, verified from its genesis. It is
// safe for concurrent use.
type Chain struct {
	mu       sync.RWMutex
	versions []*Version // versions[i].Number() == i+1
	forks    []*ForkError
}

// NewChain verifies genesis, the trust anchor, and returns a chain holding
// it.
func NewChain(genesis *pocnetv1.SignedVersion, now time.Time) (*Chain, error) {
	v, err := Verify(nil, genesis, now)
	if err != nil {
		return nil, err
	}
	return &Chain{versions: []*Version{v}}, nil
}

// Latest returns the version in force.
func (c *Chain) Latest() *Version {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.versions[len(c.versions)-1]
}

// Version returns version n of the chain.
func (c *Chain) Version(n uint64) (*Version, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if n == 0 || n > uint64(len(c.versions)) {
		return nil, false
	}
	return c.versions[n-1], true
}

// Forks returns the forks detected so far, oldest first.
func (c *Chain) Forks() []*ForkError {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return slices.Clone(c.forks)
}

// Append adds v, a version Verify accepted as the child of the chain's
// latest version, without verifying it again. It refuses a v whose parent
// is not the latest version.
func (c *Chain) Append(v *Version) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	latest := c.versions[len(c.versions)-1]
	if lh := latest.Hash(); v.Number() != latest.Number()+1 || !bytes.Equal(v.pb.GetParentHash(), lh[:]) {
		return fmt.Errorf("%w: version %d: not the child of version %d (%s)", ErrUnknownParent, v.Number(), latest.Number(), short(lh[:]))
	}
	c.versions = append(c.versions, v)
	return nil
}

// Add verifies sv as the next version and appends it. It refuses, with the
// reason: a version that does not verify; a version not newer than the
// latest (ErrStale), unless it is a valid sibling of a version in the chain,
// which is a fork (*ForkError, also kept for Forks); and a version whose
// parent the chain does not hold (ErrUnknownParent).
func (c *Chain) Add(sv *pocnetv1.SignedVersion, now time.Time) (*Version, error) {
	pb, h, err := decode(sv)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	latest := c.versions[len(c.versions)-1]
	n := pb.GetVersion()
	switch {
	case n == latest.Number()+1:
		if lh := latest.Hash(); !bytes.Equal(pb.GetParentHash(), lh[:]) {
			return nil, fmt.Errorf("%w: version %d: parent %s is not version %d of this chain (%s): it continues another history",
				ErrUnknownParent, n, short(pb.GetParentHash()), latest.Number(), short(lh[:]))
		}
		v, err := Verify(latest, sv, now)
		if err != nil {
			return nil, err
		}
		c.versions = append(c.versions, v)
		return v, nil
	case n > latest.Number()+1:
		return nil, fmt.Errorf("%w: version %d: the chain ends at version %d; the versions between are missing", ErrUnknownParent, n, latest.Number())
	case n <= 1:
		if have := c.versions[0].Hash(); h == have {
			return nil, fmt.Errorf("%w: version 1 is already the genesis of this chain", ErrStale)
		}
		return nil, fmt.Errorf("%w: version %d: not newer than version %d in force, and not this chain's genesis", ErrStale, n, latest.Number())
	}
	have := c.versions[n-1]
	if have.Hash() == h {
		return nil, fmt.Errorf("%w: version %d is already in the chain (version %d in force)", ErrStale, n, latest.Number())
	}
	parent := c.versions[n-2]
	if ph := parent.Hash(); !bytes.Equal(pb.GetParentHash(), ph[:]) {
		return nil, fmt.Errorf("%w: version %d: not newer than version %d in force, and its parent is not in this chain", ErrStale, n, latest.Number())
	}
	// A different version with a parent we hold: if it verifies, two valid
	// versions compete for one place. Refuse it and report; never choose.
	v, err := Verify(parent, sv, now)
	if err != nil {
		return nil, err
	}
	fe := &ForkError{Version: n, Parent: parent.Hash(), Have: have.Hash(), Got: h}
	for _, s := range have.signers {
		if slices.Contains(v.signers, s) {
			fe.Equivocators = append(fe.Equivocators, s)
		}
	}
	slices.Sort(fe.Equivocators)
	if !slices.ContainsFunc(c.forks, func(f *ForkError) bool { return f.Got == fe.Got }) {
		c.forks = append(c.forks, fe)
	}
	return nil, fe
}
