// Package governance owns the verifiable core of the federation's signed,
// versioned directory: the decision rule and its quorum arithmetic, the
// verification of one directory version against its parent, and a chain of
// versions verified from its genesis with forks and replays refused.
//
// Each version carries the whole directory and rule after one declared
// change and the SHA-256 of its parent's exact bytes. Who must sign depends
// on the change:
//
//   - the genesis: every state member it lists, with keys of its own
//     directory (the genesis is the trust anchor an operator installs; the
//     founders' signatures show that each of them agreed to it);
//   - an entry update: the member whose entry it is, alone, with a key of
//     its entry in the parent (a member rotating its keys signs with its old
//     key);
//   - an admission, a removal or a rule change: state members of the parent
//     according to the parent's rule;
//   - a removal signed by the removed member itself: that signature alone
//     (a member may always withdraw; it is no more than what its own key can
//     already do to its own entry);
//   - an observer admission: at least one state member proposes it; it takes
//     effect at its silence deadline unless a state member objects.
//
// Every signature a version carries must verify with a key the signer
// publishes in the directory in force and be allowed for that change:
// a version is kept as received and shown to others, so it never carries a
// signature that a later reader could miscount.
//
// The package is pure but for LoadGenesis, which reads the genesis file an
// operator installs: it reads no clock and no network. It never chooses
// between two valid versions with the same parent; it reports the fork.
// Next* make the version for one change, Assess says where a proposal
// stands and Merge collects signatures; internal/dirsync keeps the chain
// of a node and exchanges it with peers.
package governance
