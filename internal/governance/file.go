package governance

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// This file holds the package's one exception to reading no file: the
// genesis an operator installs, and the JSON form of a signed version.
// Nothing here verifies; Verify and Chain stay pure.

// MaxJSONSize bounds a signed version in its JSON form: base64 makes the
// version bytes a third longer than MaxSize allows them to be, and JSON adds
// names and indentation around each signature.
const MaxJSONSize = 2 * MaxSize

// MarshalSigned returns sv in the indented protobuf JSON form that
// ParseSignedJSON and LoadGenesis read. The version stays as the bytes that
// were signed (base64 in JSON): it is never re-serialized from its fields,
// which would change what the signatures cover.
func MarshalSigned(sv *pocnetv1.SignedVersion) ([]byte, error) {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(sv)
	if err != nil {
		return nil, fmt.Errorf("governance: %w", err)
	}
	return append(b, '\n'), nil
}

// ParseSignedJSON decodes a signed version from its protobuf JSON form. It
// checks the encoding only: unknown fields are refused, here and inside the
// version bytes (see Parse), and so is anything larger than MaxSize once
// decoded. Nothing is verified.
func ParseSignedJSON(data []byte) (*pocnetv1.SignedVersion, error) {
	if len(data) > MaxJSONSize {
		return nil, fmt.Errorf("%w: %d bytes of JSON, more than %d", ErrInvalid, len(data), MaxJSONSize)
	}
	sv := &pocnetv1.SignedVersion{}
	// Unknown fields are errors (the protojson default, stated here): a
	// misspelt "signatures" must not leave a version that looks unsigned
	// for a reason nobody sees.
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(data, sv); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if n := proto.Size(sv); n > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes decoded, more than %d", ErrInvalid, n, MaxSize)
	}
	if len(sv.GetVersion()) == 0 {
		return nil, fmt.Errorf("%w: version: required", ErrInvalid)
	}
	return sv, nil
}

// LoadGenesis reads the genesis file at path: a signed version 1 in the form
// MarshalSigned writes. It refuses a file that does not decode, has unknown
// fields, or holds any other version, naming the file and the fault. It does
// not verify the signatures: NewChain does, and a node must build its chain
// from what LoadGenesis returns before trusting any of it.
func LoadGenesis(path string) (*pocnetv1.SignedVersion, error) {
	data, err := readBounded(path, MaxJSONSize)
	if err != nil {
		return nil, fmt.Errorf("genesis %s: %w", path, err)
	}
	sv, err := ParseSignedJSON(data)
	if err != nil {
		return nil, fmt.Errorf("genesis %s: %w", path, err)
	}
	pb, _, err := decode(sv)
	if err != nil {
		return nil, fmt.Errorf("genesis %s: %w", path, err)
	}
	// A later version in place of the genesis would anchor trust in a
	// directory whose history nobody checked: say so rather than let
	// NewChain report a bare "a genesis is version 1".
	if n := pb.GetVersion(); n != 1 {
		return nil, fmt.Errorf("genesis %s: %w: holds version %d, not version 1: the genesis is the federation's first version, signed by every founding state", path, ErrInvalid, n)
	}
	return sv, nil
}

// readBounded reads the file at path, refusing one larger than limit
// without reading it all.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, withoutPath(err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, withoutPath(err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrInvalid, limit)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: the file is empty", ErrInvalid)
	}
	return data, nil
}

// withoutPath drops the path from a file system error: the caller names the
// file once. The reason stays, for errors.Is.
func withoutPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}
