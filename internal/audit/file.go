package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"time"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// The export file format, "pocnet-audit-v1": JSON lines, UTF-8, each line
// ending in "\n".
//
// The first line is the header:
//
//	{"format":"pocnet-audit-v1","node":"spiffe://…/state/XAA/node","exported_at":"2026-03-14T03:00:00Z","start":"0:0000…","head":"72:9f2c…"}
//
// start is the head the export follows ("0:" and 64 zeros for a full
// export) and head is the node's head when the export began, both as
// "SEQ:HEX". Every further line is one entry, the protobuf JSON form of
// pocnet.v1.AuditEntry (bytes in standard base64), in order:
//
//	{"record":"CAESDAi…","hash":"nyw…"}
//
// Nothing in the file is trusted: the entries are verified as a chain from
// start, and the chain must reach head with head's hash, so that a file cut
// short is detected. Whoever can edit the file can edit its header too: to
// detect records removed from the end or a rewritten chain, verify against
// a head known from elsewhere (the live node, or a head noted earlier).
const FileFormat = "pocnet-audit-v1"

// MaxLine bounds one line of an export file, so that a hostile file cannot
// exhaust memory. An entry is far smaller.
const MaxLine = 1 << 20

// FileHeader is the first line of an export file.
type FileHeader struct {
	// Node is the SPIFFE ID of the node whose log this is.
	Node string
	// ExportedAt is when the export began.
	ExportedAt time.Time
	// Start is the head the exported entries follow: Head{} for a full
	// export.
	Start Head
	// Head is the node's head when the export began.
	Head Head
}

type fileHeader struct {
	Format     string    `json:"format"`
	Node       string    `json:"node"`
	ExportedAt time.Time `json:"exported_at"`
	Start      string    `json:"start"`
	Head       string    `json:"head"`
}

type fileEntry struct {
	Record []byte `json:"record"`
	Hash   []byte `json:"hash"`
}

// Writer writes an export file.
type Writer struct {
	w *bufio.Writer
}

// NewWriter writes the header of an export file to w.
func NewWriter(w io.Writer, h FileHeader) (*Writer, error) {
	fw := &Writer{w: bufio.NewWriter(w)}
	err := fw.line(fileHeader{
		Format: FileFormat, Node: h.Node, ExportedAt: h.ExportedAt.UTC(),
		Start: h.Start.String(), Head: h.Head.String(),
	})
	if err != nil {
		return nil, err
	}
	return fw, nil
}

// Write writes one entry.
func (w *Writer) Write(e *pocnetv1.AuditEntry) error {
	return w.line(fileEntry{Record: e.GetRecord(), Hash: e.GetHash()})
}

// Flush writes what is buffered.
func (w *Writer) Flush() error { return w.w.Flush() }

func (w *Writer) line(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.w.Write(b)
	return w.w.WriteByte('\n')
}

// Reader reads an export file.
type Reader struct {
	r      *bufio.Reader
	header FileHeader
	line   int
}

// NewReader reads the header of an export file from r. A malformed header
// is an *Error with Problem Malformed.
func NewReader(r io.Reader) (*Reader, error) {
	fr := &Reader{r: bufio.NewReaderSize(r, 64<<10)}
	b, err := fr.next()
	if errors.Is(err, io.EOF) {
		return nil, broken(Malformed, 1, "line 1: the file is empty; want a %s header", FileFormat)
	}
	if err != nil {
		return nil, err
	}
	var h fileHeader
	if err := strict(b, &h); err != nil {
		return nil, broken(Malformed, 1, "line 1: not a %s header: %v", FileFormat, err)
	}
	if h.Format != FileFormat {
		return nil, broken(Malformed, 1, "line 1: format %q, want %q", h.Format, FileFormat)
	}
	fr.header = FileHeader{Node: h.Node, ExportedAt: h.ExportedAt}
	if fr.header.Start, err = ParseHead(h.Start); err != nil {
		return nil, broken(Malformed, 1, "line 1: start: %v", err)
	}
	if fr.header.Head, err = ParseHead(h.Head); err != nil {
		return nil, broken(Malformed, 1, "line 1: head: %v", err)
	}
	return fr, nil
}

// Header returns the file's header.
func (r *Reader) Header() FileHeader { return r.header }

// Next returns the next entry, or io.EOF after the last. A malformed line
// is an *Error with Problem Malformed naming the line.
func (r *Reader) Next() (*pocnetv1.AuditEntry, error) {
	b, err := r.next()
	if err != nil {
		return nil, err
	}
	var e fileEntry
	if err := strict(b, &e); err != nil {
		return nil, broken(Malformed, uint64(r.line), "line %d: not an audit entry: %v", r.line, err)
	}
	return &pocnetv1.AuditEntry{Record: e.Record, Hash: e.Hash}, nil
}

// next returns the next line without its "\n".
func (r *Reader) next() ([]byte, error) {
	r.line++
	var line []byte
	for {
		chunk, err := r.r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > MaxLine {
			return nil, broken(Malformed, uint64(r.line), "line %d: longer than %d bytes", r.line, MaxLine)
		}
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(line) == 0 {
				return nil, io.EOF
			}
			return nil, broken(Malformed, uint64(r.line), "line %d: the file ends without a newline (cut short?)", r.line)
		default:
			return nil, err
		}
	}
}

// strict decodes exactly one JSON object with known fields only.
func strict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the object")
	}
	return nil
}

// Result is the outcome of verifying an export file.
type Result struct {
	Header FileHeader
	// Head is the head of the verified entries.
	Head Head
	// Records is how many entries were verified.
	Records int
}

// VerifyFile reads an export file from r and verifies its entries as a
// chain from the header's start; the chain must reach the header's head
// and every anchor. A broken or malformed file is an error wrapping
// ErrBroken; a failure to read r is returned as is.
func VerifyFile(r io.Reader, anchors ...Anchor) (Result, error) {
	fr, err := NewReader(r)
	if err != nil {
		return Result{}, err
	}
	h := fr.Header()
	anchors = append([]Anchor{{Head: h.Head, Label: "the export's head"}}, anchors...)
	v := NewVerifier(h.Start, anchors...)
	for {
		e, err := fr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Result{Header: h, Head: v.last, Records: v.n}, err
		}
		if err := v.Add(e); err != nil {
			return Result{Header: h, Head: v.last, Records: v.n}, err
		}
	}
	head, err := v.Finish()
	return Result{Header: h, Head: head, Records: v.n}, err
}
