package transcript

import (
	"bytes"
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// MaxFileSize bounds a transcript or a bundle read from a file, so that a
// bad file cannot exhaust memory.
const MaxFileSize = 64 << 20

// Marshal returns a transcript or a disclosure bundle as indented protobuf
// JSON, the form pocctl writes. The spacing protojson produces is
// deliberately unstable; re-indenting makes the same message always the
// same bytes.
func Marshal(m proto.Message) ([]byte, error) {
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// Unmarshal reads a transcript in protobuf JSON (as Marshal writes it) or
// in binary protobuf form. Unknown JSON fields are errors.
func Unmarshal(data []byte) (*pocnetv1.Transcript, error) {
	var t pocnetv1.Transcript
	if err := unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("transcript: %w", err)
	}
	return &t, nil
}

// UnmarshalBundle reads a disclosure bundle in protobuf JSON or binary form.
func UnmarshalBundle(data []byte) (*pocnetv1.DisclosureBundle, error) {
	var b pocnetv1.DisclosureBundle
	if err := unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("disclosure bundle: %w", err)
	}
	return &b, nil
}

func unmarshal(data []byte, m proto.Message) error {
	if len(data) > MaxFileSize {
		return fmt.Errorf("%d bytes, more than %d", len(data), MaxFileSize)
	}
	// A binary Transcript or DisclosureBundle never starts with '{' (it
	// would be field 15 as a group), so the first byte tells the forms apart.
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && t[0] == '{' {
		return protojson.Unmarshal(t, m)
	}
	return proto.Unmarshal(data, m)
}
