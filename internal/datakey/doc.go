// Package datakey owns a node's data keys: the AES-256 keys that seal every
// value the node writes to its store, so that a copy of the data directory
// (a stolen disk, a backup, a decommissioned machine) reveals nothing of the
// messages in it.
//
// # Keys and the ring
//
// A Key is 32 random bytes used with AES-256-GCM. Its ID is the first four
// bytes of SHA-256("pocnet data key id" || 0x00 || key), written as eight
// hexadecimal digits. Deriving the ID from the key, rather than choosing it,
// lets Load detect a key line that was mistyped or pasted beside the wrong
// ID; four bytes of a hash reveal nothing useful about a 256-bit key.
//
// A Ring holds one or more keys. The last one is current: Seal uses it for
// every new value. The others only open values sealed before a rotation. A
// Ring never changes after it is made, so it is safe for concurrent use; to
// rotate, a caller makes a new Ring (Add, With, Load) and swaps it in.
//
// # Key file format
//
// A key file is text, one key per line:
//
//	# pocnet data keys. The last key is current.
//	3f9a0c1e 5q0f7A0pM1m0n8k0S1dS7WmX3nq3o1j9y8b0xq2vG0c=
//	b71c2d04 Tm90IGEga2V5OiBJRHMgaGVyZSBkbyBub3QgbWF0Y2g=
//
// (These two lines only show the shape: their IDs do not match their keys,
// so Load refuses them.)
//
// Each key line is the key's ID, one or more spaces or tabs, and the 32 key
// bytes in standard base64 (with padding). Blank lines and lines starting
// with '#' are ignored. The LAST key line is the current key. Rotation is:
// append a key (Add), make the node reload the file, let the store rewrap
// its values, and delete the old line once the store reports that no value
// is sealed under it any more.
//
// Load refuses a key file whose permission bits give any access to group or
// others (anything beyond 0600), before reading a byte of it, and names the
// file; errors about the content name the file and the line. No error ever
// contains key material, and a Key or Ring prints as its IDs only.
//
// The environment variable named by EnvVar (POCNET_DATA_KEY by convention;
// FromEnv takes the name) holds the same format; since a multi-line value is
// awkward in service managers, ';' also separates entries there.
//
// # Sealed values
//
// Seal returns version (1 byte, 0x01 = AES-256-GCM) || key ID (4 bytes) ||
// nonce (12 random bytes) || ciphertext and 16-byte tag: 33 bytes more than
// the plaintext. The additional data authenticated with it is the 5-byte
// header followed by the caller's aad; the store passes the value's key, so
// a value copied under another key does not open. Open picks the key by the
// ID in the header.
//
// Nonces are random, so one key must not seal more than 2^32 values (NIST SP
// 800-38D); a node that rotates its key yearly stays orders of magnitude
// below that.
//
// This package must never write a key anywhere but the key file it is given,
// never log or format key bytes, and never read a key file that others can
// read or change.
package datakey
